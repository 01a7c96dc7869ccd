// `sqlx::migrate!` embeds migrations/ at compile time; a new migration file must rebuild paykit.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
