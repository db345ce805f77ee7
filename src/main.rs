use clap::Parser;

fn main() {
    let cli = pipe::cli::Cli::parse();
    std::process::exit(pipe::cli::main(cli));
}
