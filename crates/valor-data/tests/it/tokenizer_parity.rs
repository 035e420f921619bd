//! The tokenizer must reproduce, id for id, the encodings that HF
//! transformers produced for the parity fixture
//! (`../shared/fixtures/hf-parity/make_fixture.py`: the checkpoint's own
//! tokenizer.json, truncation at 128, padding to the longest, pad id 0).

use safetensors::SafeTensors;
use valor_data::{TextTokenizer, batch::collate};

fn i64_tensor(st: &SafeTensors, name: &str) -> (Vec<i64>, Vec<usize>) {
    let t = st.tensor(name).unwrap();
    let v = t
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (v, t.shape().to_vec())
}

#[valor_testkit::shared_test]
fn encodings_match_hf_transformers() {
    let shared = valor_testkit::shared_dir();
    let fixture = shared.join("fixtures/hf-parity");
    let bytes = std::fs::read(fixture.join("reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (ids, shape) = i64_tensor(&st, "input_ids");
    let (mask, _) = i64_tensor(&st, "attention_mask");
    let (types, _) = i64_tensor(&st, "token_type_ids");
    let sentences: Vec<String> = std::fs::read_to_string(fixture.join("sentences.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(sentences.len(), shape[0]);

    let tok = TextTokenizer::from_model_dir(&shared.join("models/all-MiniLM-L6-v2"), 128).unwrap();
    let enc = tok.encode_batch(&sentences).unwrap();
    let batch = collate(
        (0..enc.len()).collect(),
        &enc.iter().collect::<Vec<_>>(),
        tok.pad_id(),
    );
    assert_eq!(batch.seq_len, shape[1], "padded length");
    let as_i64 = |v: &[u32]| v.iter().map(|&x| i64::from(x)).collect::<Vec<_>>();
    for (i, s) in sentences.iter().enumerate() {
        let row = i * shape[1]..(i + 1) * shape[1];
        assert_eq!(
            as_i64(&batch.input_ids[row.clone()]),
            ids[row.clone()],
            "input_ids of sentence {i}: {s}"
        );
        assert_eq!(
            as_i64(&batch.attention_mask[row.clone()]),
            mask[row.clone()],
            "attention_mask of sentence {i}"
        );
        assert_eq!(
            as_i64(&batch.token_type_ids[row.clone()]),
            types[row],
            "token_type_ids of sentence {i}"
        );
    }
    // The last sentence is longer than 128 tokens: truncated, [SEP] kept.
    assert_eq!(enc.last().unwrap().len(), 128);

    // vocab.txt gives the same ids as tokenizer.json.
    let vocab =
        TextTokenizer::from_file(&shared.join("models/all-MiniLM-L6-v2/vocab.txt"), 128, true)
            .unwrap();
    assert_eq!(
        vocab
            .encode_batch(&sentences)
            .unwrap()
            .iter()
            .map(|e| &e.ids)
            .collect::<Vec<_>>(),
        enc.iter().map(|e| &e.ids).collect::<Vec<_>>()
    );
}
