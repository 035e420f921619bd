//! `valor data gen` and `valor data inspect`.

use crate::valor;

#[test]
fn gen_then_inspect_reports_the_bias() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("finance.csv");
    let out_s = out.to_str().unwrap();
    let (code, stdout, stderr) = valor(&[
        "data", "gen", "--rows", "3000", "--seed", "5", "--out", out_s,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("wrote 3000 rows"), "{stdout}");

    let (code, stdout, stderr) = valor(&["data", "inspect", out_s]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("label `label` rate by `gender`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("label `fair_label` rate by `gender`"),
        "{stdout}"
    );

    let (code, stdout, _) = valor(&["data", "inspect", out_s, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["rows"], 3000);
    let gap = v["group_summaries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["column"] == "gender" && g["label_column"] == "label")
        .unwrap()["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["label"] == "growth")
        .unwrap()["gap"]
        .as_f64()
        .unwrap();
    assert!(gap > 0.1, "historical growth gap {gap}");
}

#[test]
fn explicit_columns_and_formats() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.parquet");
    let (code, _, stderr) = valor(&[
        "data",
        "gen",
        "--rows",
        "200",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = valor(&[
        "data",
        "inspect",
        out.to_str().unwrap(),
        "--text-col",
        "text",
        "--label-col",
        "label",
        "--group",
        "gender",
        "--group",
        "age_band",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("rate by `age_band`"), "{stdout}");
}

fn check_error(args: &[&str], files: &[(&str, &[u8])], want: &str) {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{dir}", dir.path().to_str().unwrap()))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = valor(&args);
    assert_eq!(code, 2, "exit code for {args:?}: {stderr}");
    assert!(
        stderr.contains(want),
        "stderr for {args:?}:\n{stderr}\nwanted: {want}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_input_exits_2_with_file_row_and_column() {
    let csv: &[u8] = b"text,y,sex\nhello,1,m\nworld,2,\n";
    check_error(
        &[
            "data",
            "inspect",
            "{dir}/d.csv",
            "--text-col",
            "text",
            "--label-col",
            "y",
            "--group",
            "gender",
        ],
        &[("d.csv", csv)],
        "column `gender` not found; columns are: text, y, sex",
    );
    check_error(
        &[
            "data",
            "inspect",
            "{dir}/d.csv",
            "--text-col",
            "text",
            "--label-col",
            "y",
            "--group",
            "sex",
        ],
        &[("d.csv", csv)],
        "d.csv: row 2, column `sex`: empty value",
    );
    check_error(
        &[
            "data",
            "inspect",
            "{dir}/d.csv",
            "--text-col",
            "text",
            "--label-col",
            "y",
            "--labels",
            "1,3",
        ],
        &[("d.csv", csv)],
        "row 2, column `y`: unknown label `2`",
    );
    check_error(
        &[
            "data",
            "inspect",
            "{dir}/d.csv",
            "--text-col",
            "text",
            "--label-col",
            "y",
        ],
        &[("d.csv", b"text,y\nok,1\ncaf\xe9,2\n")],
        "d.csv: row 2: bytes that are not valid UTF-8",
    );
    check_error(
        &[
            "data",
            "inspect",
            "{dir}/d.parquet",
            "--text-col",
            "text",
            "--label-col",
            "y",
        ],
        &[("d.parquet", csv)],
        "d.parquet: the file is not Parquet",
    );
    check_error(
        &[
            "data",
            "inspect",
            "{dir}/nope.csv",
            "--text-col",
            "t",
            "--label-col",
            "y",
        ],
        &[],
        "nope.csv",
    );
    check_error(
        &["data", "gen", "--bias", "1.5", "--out", "{dir}/x.csv"],
        &[],
        "--bias must be a probability",
    );
}
