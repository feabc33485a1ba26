//! burrow: the user's command. Serves `burrow run --rm ... FILE.sqfs CMD` from a run plan the
//! CLI wrote earlier, and execs Node's CLI (bin/burrow.js) for everything else
//! (burrow_runtime::launcher says how and why).

fn main() {
    burrow_runtime::launcher::main()
}
