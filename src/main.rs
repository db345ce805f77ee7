use clap::Parser;

fn main() {
    pipe::backend::tune_allocator();
    let cli = pipe::cli::Cli::parse();
    std::process::exit(pipe::cli::main(cli));
}
