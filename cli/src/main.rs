//! `wasmops`: the dashboard's train, compile, gate and register steps without a browser.
//! Exit status: 0 done, 1 a gate failed or a rollout rolled back, 2 anything else that stopped
//! the command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wasmops_cli::{controller, gate, keys, registry, train, Failure};
use wasmops_trainer::catalog::Task;

#[derive(Parser)]
#[command(
    name = "wasmops",
    version = wasmops_trainer::run::CODE_VERSION,
    about = "Train, gate, sign and register wasmops model modules headless, with the dashboard's own code"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a spec on a CSV file: writes DIR/run.json and DIR/model.wasm (the same bytes the
    /// dashboard compiles for the same spec, data and code version).
    Train {
        /// A TrainSpec, a run's params, a run record (run.json) or the dashboard's runs export.
        #[arg(long, value_name = "SPEC.json")]
        spec: PathBuf,
        #[arg(long, value_name = "FILE.csv")]
        data: PathBuf,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The run to train again, when --spec is a runs export holding several.
        #[arg(long)]
        run_id: Option<String>,
        /// Target column (default: the run's, else the last column).
        #[arg(long)]
        target: Option<String>,
        /// classification or regression (default: the run's, else guessed as the dashboard does).
        #[arg(long, value_parser = parse_task)]
        task: Option<Task>,
        /// A column to leave out of the features (repeatable; default: the run's, else the text
        /// columns).
        #[arg(long = "ignore", value_name = "COLUMN")]
        ignore: Vec<String>,
        /// The dataset's display name, recorded in the card (default: the run's, else the
        /// file's name, as the dashboard names an import).
        #[arg(long)]
        dataset_name: Option<String>,
        /// Leave out rows with bad values, as the dashboard's import does, instead of stopping.
        #[arg(long)]
        skip_bad_rows: bool,
        /// The run's name (default: `<algorithm> (cli)`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Judge a candidate module against a baseline on held-out rows (MLflow's MetricThreshold
    /// semantics). Exit status 1 when a rule fails.
    Gate {
        #[arg(long, value_name = "A.wasm")]
        candidate: PathBuf,
        #[arg(long, value_name = "B.wasm")]
        baseline: PathBuf,
        #[arg(long, value_name = "HELDOUT.csv")]
        data: PathBuf,
        /// `METRIC >= X`, `METRIC <= X`, `METRIC min_absolute_change X`,
        /// `METRIC min_relative_change X`, `METRIC greater_is_better true|false` (repeatable).
        #[arg(long = "rule", value_name = "RULE", required = true)]
        rules: Vec<String>,
        /// Leave out rows a module cannot evaluate instead of stopping.
        #[arg(long)]
        skip_bad_rows: bool,
        /// The report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Sign a module: writes MODULE.wasm.sig beside it.
    Sign {
        /// P-256 private key, PEM (PKCS#8 or SEC1).
        #[arg(long, value_name = "KEY.pem")]
        key: PathBuf,
        #[arg(value_name = "MODULE.wasm")]
        module: PathBuf,
    },
    /// Print the public key (PEM) of a private key, for devices' --trusted-keys.
    Pubkey {
        #[arg(long, value_name = "KEY.pem")]
        key: PathBuf,
    },
    /// Log a run directory to MLflow, upload its module and register it as a model version.
    Register {
        #[command(flatten)]
        server: Server,
        #[arg(long)]
        model: String,
        /// Point this alias at the version (e.g. challenger).
        #[arg(long)]
        alias: Option<String>,
        /// A directory written by `wasmops train`.
        #[arg(long, value_name = "DIR")]
        run_dir: PathBuf,
        /// Sign the module and upload the signature beside it.
        #[arg(long, value_name = "KEY.pem")]
        key: Option<PathBuf>,
        #[arg(long, default_value = "wasmops")]
        experiment: String,
        #[arg(long)]
        json: bool,
    },
    /// Move a registered model's alias to a version.
    Alias {
        #[command(flatten)]
        server: Server,
        #[arg(long)]
        model: String,
        #[arg(long)]
        alias: String,
        #[arg(long)]
        version: String,
    },
    /// Run the unattended loop: drift on a device group fires a rule, the spec is retrained on
    /// the newest dataset, gated against `champion`, registered as `challenger` and rolled
    /// out by plan. Runs until stopped; resumes from its state file.
    Controller {
        #[arg(long, value_name = "FILE.toml")]
        config: PathBuf,
        /// One poll, then exit (for cron or a check).
        #[arg(long)]
        once: bool,
    },
    /// Roll one registered version out by the plan of a controller config (its devices, groups
    /// and checks), printing each decision. Exit status 1 when the plan rolls it back.
    Rollout {
        #[arg(long, value_name = "FILE.toml")]
        config: PathBuf,
        /// The model version to roll out (of the config's `model`).
        #[arg(long)]
        version: String,
    },
}

#[derive(clap::Args)]
struct Server {
    /// The MLflow server, e.g. http://127.0.0.1:5000.
    #[arg(long, env = "MLFLOW_TRACKING_URI", value_name = "URI")]
    tracking_uri: String,
    /// `user:password` or `Bearer TOKEN` (default: MLFLOW_TRACKING_USERNAME/PASSWORD, or
    /// MLFLOW_TRACKING_TOKEN).
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
}

impl Server {
    fn credentials(&self) -> anyhow::Result<registry::Credentials> {
        registry::Credentials::from(self.credentials.as_deref(), |name| std::env::var(name).ok())
    }
}

fn parse_task(s: &str) -> Result<Task, String> {
    Task::parse(s).ok_or_else(|| format!("`{s}`: classification or regression"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Failure::Error(e) = &failure {
                eprintln!("wasmops: {e:#}");
            }
            ExitCode::from(failure.exit_code())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Train {
            spec,
            data,
            out,
            run_id,
            target,
            task,
            ignore,
            dataset_name,
            skip_bad_rows,
            name,
        } => {
            let t = train::train(&train::TrainOptions {
                spec,
                data,
                out: out.clone(),
                run_id,
                target,
                task,
                ignore,
                dataset_name,
                skip_bad_rows,
                name,
            })?;
            for note in &t.notes {
                eprintln!("wasmops train: {note}");
            }
            let (metric, value) = t.run.primary_metric();
            println!(
                "trained {} on {} ({} rows, dataset {}): {metric} {}",
                t.run.pipeline.model.kind(),
                t.run.dataset.name,
                t.run.dataset.n_rows,
                t.run.dataset.hash,
                value.map_or("-".to_string(), |v| format!("{v:.6}"))
            );
            println!(
                "module sha256 {} ({} bytes), code version {}",
                t.module_hash,
                t.module.len(),
                t.run.code_version
            );
            println!(
                "wrote {} and {}",
                out.join(train::RUN_FILE).display(),
                out.join(train::MODULE_FILE).display()
            );
        }
        Command::Gate {
            candidate,
            baseline,
            data,
            rules,
            skip_bad_rows,
            json,
        } => {
            let outcome = gate::run(&gate::GateOptions {
                candidate,
                baseline,
                data,
                rules,
                skip_bad_rows,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
                print!("{}", gate::render(&outcome));
            }
            if !outcome.report.passed {
                return Err(Failure::GateFailed);
            }
        }
        Command::Sign { key, module } => {
            let (signature, path) = keys::sign(&key, &module)?;
            println!(
                "signed {} (sha256 {}) with key {}: wrote {}",
                module.display(),
                signature.module_sha256,
                signature.key_id,
                path.display()
            );
        }
        Command::Pubkey { key } => {
            print!("{}", keys::signer(&key)?.public_key_pem());
        }
        Command::Register {
            server,
            model,
            alias,
            run_dir,
            key,
            experiment,
            json,
        } => {
            let options = registry::RegisterOptions {
                tracking_uri: server.tracking_uri.clone(),
                credentials: server.credentials()?,
                model,
                alias,
                run_dir,
                key,
                experiment,
            };
            let r = runtime()?.block_on(registry::register(&options))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "registered {} version {} (sha256 {}, {} bytes) from run {} in experiment {}{}{}",
                    r.model,
                    r.version,
                    r.sha256,
                    r.size,
                    r.run_id,
                    r.experiment_id,
                    r.alias
                        .as_ref()
                        .map(|a| format!("; alias {a} -> {}", r.version))
                        .unwrap_or_default(),
                    r.signed_by
                        .as_ref()
                        .map(|k| format!("; signed by key {k}"))
                        .unwrap_or_default()
                );
            }
        }
        Command::Alias {
            server,
            model,
            alias,
            version,
        } => {
            let credentials = server.credentials()?;
            let before = runtime()?.block_on(registry::move_alias(
                &server.tracking_uri,
                credentials,
                &model,
                &alias,
                &version,
            ))?;
            println!(
                "{model} alias {alias}: {} -> {version}",
                before.as_deref().unwrap_or("(none)")
            );
        }
        Command::Controller { config, once } => {
            let config = controller::Config::load(&config)?;
            let mut c = controller::Controller::new(config)?;
            let rt = runtime()?;
            if once {
                rt.block_on(c.poll())?;
            } else {
                rt.block_on(c.run())?;
            }
        }
        Command::Rollout { config, version } => {
            let config = controller::Config::load(&config)?;
            let mut c = controller::Controller::new(config)?;
            let end = runtime()?.block_on(c.rollout_version(&version))?;
            println!("rollout of version {version}: {}", end.as_str());
            if end != wasmops_shared::automation::RolloutState::Completed {
                return Err(Failure::RolledBack);
            }
        }
    }
    Ok(())
}
