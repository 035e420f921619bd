//! Prints the label shares of the built-in dataset by gender (a quick look at
//! the generator's parameters).
#![allow(clippy::print_stdout)]
fn main() {
    let d = valor_data::generate(&valor_data::SynthConfig::default());
    for (name, labels) in [("fair", &d.fair), ("historical", &d.historical)] {
        for female in [false, true] {
            let rows: Vec<usize> = (0..labels.len())
                .filter(|&i| d.profiles[i].female == female)
                .collect();
            let share = |c: usize| {
                rows.iter().filter(|&&i| labels[i] == c).count() as f64 / rows.len() as f64
            };
            println!(
                "{name:>10} female={female}: conservative {:.3} balanced {:.3} growth {:.3}",
                share(0),
                share(1),
                share(2)
            );
        }
    }
    println!("{}\n{}", d.texts[0], d.twins[0]);
}
