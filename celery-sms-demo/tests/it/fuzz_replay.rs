//! The fuzz targets' committed seeds, replayed as ordinary tests: every
//! property a target checks under libFuzzer (`scripts/fuzz`) is checked here
//! on each seed in `fuzz/seeds/<target>/`, without the instrumented build.
//!
//! Each target's logic lives in `fuzz/logic/<target>.rs`, written as a
//! `fuzz_target!(|input| { … })`. libFuzzer's macro makes it a fuzz entry
//! point; the one below makes it a plain `run(&[u8])`, which decodes typed
//! inputs (`Input<'_>`) from the bytes as libFuzzer does
//! (`Arbitrary::arbitrary_take_rest`).

use std::path::PathBuf;

macro_rules! fuzz_target {
    (|$data:ident: &[u8]| $body:block) => {
        pub fn run($data: &[u8]) $body
    };
    (|$data:ident: $input:ty| $body:block) => {
        pub fn run(bytes: &[u8]) {
            let unstructured = arbitrary::Unstructured::new(bytes);
            if let Ok($data) = <$input as arbitrary::Arbitrary>::arbitrary_take_rest(unstructured) {
                $body
            }
        }
    };
}

macro_rules! replay {
    ($($target:ident),* $(,)?) => {$(
        #[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
        mod $target {
            include!(concat!("../../../fuzz/logic/", stringify!($target), ".rs"));
        }

        #[test]
        fn $target() {
            replay(stringify!($target), $target::run);
        }
    )*};
}

replay!(
    amqp_headers,
    canvas,
    control,
    cron,
    pyrepr,
    redis_envelope,
    schedule,
    task_body,
    urls,
);

/// Runs `target` on each of its seeds; a panic names the seed.
fn replay(target: &str, run: fn(&[u8])) {
    let seeds = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&seeds).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&bytes));
        assert!(outcome.is_ok(), "{target}: seed {} fails", path.display());
        count += 1;
    }
    assert!(count > 0, "no seeds in {}", seeds.display());
}
