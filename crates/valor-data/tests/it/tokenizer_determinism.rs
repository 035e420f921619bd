//! Training a WordPiece tokenizer twice on the same corpus gives the same
//! `tokenizer.json`, byte for byte, also in a fresh process (the `tokenizers`
//! trainer breaks ties in hash-map order, and its hash seeds are random per
//! process and per map).

use std::path::Path;
use std::process::Command;

use valor_data::TextTokenizer;

/// Set in the child processes: where to save the trained tokenizer.
const OUT_VAR: &str = "VALOR_TEST_TOKENIZER_OUT";
const THIS_TEST: &str =
    "tokenizer_determinism::wordpiece_training_is_deterministic_across_processes";

/// Words of syllables, each word as frequent as many others, so the
/// most frequent pairs tie often and the vocabulary is cut inside ties.
fn corpus() -> Vec<String> {
    const SYL: [&str; 14] = [
        "ka", "lo", "mi", "re", "su", "ta", "ve", "no", "pi", "zu", "qe", "xo", "bé", "dú",
    ];
    let word = |n: usize| {
        let mut w = String::new();
        let mut n = n;
        for _ in 0..3 {
            w.push_str(SYL[n % SYL.len()]);
            n /= SYL.len();
        }
        w
    };
    (0..400)
        .map(|i| {
            format!(
                "{} {} {}, {}!",
                word(i),
                word(i * 7 + 3),
                word(i * 13 + 5),
                word(i % 50)
            )
        })
        .collect()
}

fn train_and_save(path: &Path) {
    let tok = TextTokenizer::train_wordpiece(&corpus(), 160, 64).unwrap();
    tok.save(path).unwrap();
}

#[test]
fn wordpiece_training_is_deterministic_across_processes() {
    if let Some(out) = std::env::var_os(OUT_VAR) {
        train_and_save(Path::new(&out));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..3 {
        let out = dir.path().join(format!("tokenizer-{i}.json"));
        let status = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", THIS_TEST, "--test-threads", "1"])
            .env(OUT_VAR, &out)
            .status()
            .unwrap();
        assert!(status.success(), "child {i}: {status}");
        files.push(std::fs::read(&out).unwrap());
    }
    // And twice in this process.
    for i in 3..5 {
        let out = dir.path().join(format!("tokenizer-{i}.json"));
        train_and_save(&out);
        files.push(std::fs::read(&out).unwrap());
    }
    for (i, f) in files.iter().enumerate().skip(1) {
        assert!(
            *f == files[0],
            "training {i} differs from training 0:\n{}\n---\n{}",
            String::from_utf8_lossy(f),
            String::from_utf8_lossy(&files[0])
        );
    }
    let json: serde_json::Value = serde_json::from_slice(&files[0]).unwrap();
    let vocab = json["model"]["vocab"].as_object().unwrap();
    assert_eq!(vocab.len(), 160, "the corpus fills the vocabulary");
}
