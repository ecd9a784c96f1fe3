//! Startup budget: compiling the default configuration with every shipped rule must take
//! less than 50 ms (issue: Foundation). Prints the figure; run with `cargo bench --bench startup`.

use std::time::{Duration, Instant};

fn main() {
    // One warm-up, then timed runs.
    if let Err(d) = garrison::compile::compile_path(None) {
        eprintln!("the default configuration does not compile:\n{d}");
        std::process::exit(1);
    }
    let runs = 30;
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let compiled = garrison::compile::compile_path(None).map(|c| c.ruleset.scenarios.len());
            let d = t.elapsed();
            assert!(compiled.is_ok());
            d
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let all_rules = {
        let t = Instant::now();
        let r = garrison::compile::compile_path_with(
            None,
            garrison::compile::CompileOptions { all_rules: true },
        );
        (
            t.elapsed(),
            r.map(|c| {
                (
                    c.ruleset.stages.iter().map(Vec::len).sum::<usize>(),
                    c.ruleset.scenarios.len(),
                )
            }),
        )
    };
    println!(
        "startup: compile default config + shipped rules: median {:.2} ms, p90 {:.2} ms, max {:.2} ms over {runs} runs (target < 50 ms)",
        ms(times[runs / 2]),
        ms(times[runs * 9 / 10]),
        ms(times[runs - 1])
    );
    if let (d, Ok((parsers, scenarios))) = all_rules {
        println!(
            "startup: compile with every shipped rule ({parsers} parsers, {scenarios} scenarios): {:.2} ms",
            ms(d)
        );
    }
}
