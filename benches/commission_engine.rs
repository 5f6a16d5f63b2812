// Placeholder until the bench is written in this change.
fn main() {}
