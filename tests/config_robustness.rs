//! Random bytes and truncations of valid configurations must give diagnostics, never a panic.

use garrison::config::diag::{Format, SourceFile};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn valid_configs() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "kdl" || x == "json"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).expect("readable"),
            )
        })
        .collect();
    out.push((
        "default.kdl".into(),
        garrison::config::DEFAULT_CONFIG.to_owned(),
    ));
    out
}

fn compile(name: &str, text: String) {
    let file = SourceFile::new(name, text, Format::from_path(name));
    // Either outcome is fine; panicking is not. Errors must render.
    if let Err(d) = garrison::compile::compile_source(file) {
        let _ = d.to_string();
    }
}

#[test]
fn truncated_configs_never_panic() {
    for (name, text) in valid_configs() {
        let mut cut = 0;
        while cut < text.len() {
            if text.is_char_boundary(cut) {
                compile(&name, text[..cut].to_owned());
            }
            cut += 7;
        }
    }
}

#[test]
fn mutated_configs_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let specials = b"{}[]\"#=-/\\*:;,\n 0aZ";
    for (name, text) in valid_configs() {
        for _ in 0..300 {
            let mut bytes = text.clone().into_bytes();
            for _ in 0..(1 + rng.next() % 4) {
                let i = (rng.next() as usize) % bytes.len().max(1);
                let c = specials[(rng.next() as usize) % specials.len()];
                if let Some(b) = bytes.get_mut(i) {
                    *b = c;
                }
            }
            compile(&name, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(42);
    for len in [0usize, 1, 2, 10, 100, 1000] {
        for _ in 0..50 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            compile("random.kdl", String::from_utf8_lossy(&bytes).into_owned());
            compile("random.json", String::from_utf8_lossy(&bytes).into_owned());
        }
    }
}
