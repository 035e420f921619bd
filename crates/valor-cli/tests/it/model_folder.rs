//! Model folders whose parts do not fit together are refused on load
//! (issue 17, item 3): exit 2 naming both sizes, never a panic.

use valor_data::TextTokenizer;

use crate::predict::tiny_model;
use crate::valor;

#[test]
fn a_tokenizer_larger_than_the_model_vocabulary_is_exit_2_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    let vocab = config["vocab_size"].as_u64().unwrap() as usize;
    // A WordPiece vocabulary learnt from other texts, larger than the model's.
    let corpus: Vec<String> = (0..600)
        .map(|i| format!("word{i} token{} item{}x{}", i * 7, i % 13, i % 17))
        .collect();
    let big = TextTokenizer::train_wordpiece(&[corpus.clone(), corpus].concat(), vocab + 300, 64)
        .unwrap();
    let size = big.vocab_size();
    assert!(
        size > vocab,
        "the test tokenizer has {size} tokens, the model {vocab}"
    );
    big.save(&model.join("tokenizer.json")).unwrap();

    let input = dir.path().join("in.csv");
    std::fs::write(&input, "text\nword1 token7 item1x1\n").unwrap();
    let out = dir.path().join("out.csv");
    let m = model.to_str().unwrap();
    let runs = [
        vec![
            "predict",
            "--model",
            m,
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ],
        vec!["explain", "--model", m, "--text", "word1 token7 item1x1"],
    ];
    for args in runs {
        let (code, _, stderr) = valor(&args);
        assert_eq!(code, 2, "{}: {stderr}", args[0]);
        assert!(!stderr.contains("panicked"), "{}: {stderr}", args[0]);
        assert!(
            stderr.contains(&size.to_string()) && stderr.contains(&vocab.to_string()),
            "{}: names both sizes: {stderr}",
            args[0]
        );
        assert!(stderr.contains("vocab_size"), "{stderr}");
    }
    assert!(!out.exists(), "nothing written");
}
