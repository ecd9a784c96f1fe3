//! Rebuild when the shipped rules change: they are embedded with `include_dir!`, which cargo
//! cannot see through.

fn main() {
    println!("cargo:rerun-if-changed=rules");
    println!("cargo:rerun-if-changed=src/config/default.kdl");
}
