//! The `provisio` binary: the command line (`cli`), which starts the service from the library or talks to a
//! running one over its admin API.

mod cli;

use cli::Command;

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = match cli::config::parse_command_line(std::env::args_os()) {
        cli::config::Parsed::Run(cli) => *cli,
        cli::config::Parsed::BadConfig(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            std::process::exit(2);
        }
    };
    let runtime = provisio::memory::runtime().build()?;
    let result = match cli.command {
        Command::Serve(args) => {
            init_tracing(args.log_format == "json");
            if let Err(e) = args.check() {
                eprintln!("{e}");
                std::process::exit(2);
            }
            let tls = args.tls();
            // Unusable TLS material fails the start before the data directory is touched.
            if let Some(tls) = &tls {
                provisio::tls::server_config(tls)?;
            }
            return runtime.block_on(async {
                let state = provisio::server::boot(
                    &args.data_dir,
                    provisio::server::Settings {
                        job_retention_days: args.retention_job_logs_days.or(args.job_retention_days),
                        events_retention_days: Some(args.retention_events_days),
                        audit_retention_days: Some(args.retention_audit_days),
                        deliveries_retention_days: Some(args.retention_deliveries_days),
                        proxy_rate_limit: Some(args.proxy_rate_limit).filter(|r| *r > 0.0),
                        proxy_max_in_flight: Some(args.proxy_max_in_flight),
                        database_url: args.database_url.clone(),
                        login_policy: Some(args.login_policy()),
                        quarantine_probe: Some(
                            std::time::Duration::try_from_secs_f64(args.quarantine_probe_seconds)
                                .ok()
                                .filter(|d| !d.is_zero())
                                .ok_or_else(|| {
                                    anyhow::anyhow!("--quarantine-probe-seconds must be a positive number of seconds")
                                })?,
                        ),
                        notifications: provisio::notify::NotifySettings {
                            smtp_url: args.smtp_url.clone(),
                            smtp_from: args.smtp_from.clone(),
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                )
                .await?;
                provisio::server::ensure_admin(&state.stores).await?;
                let grace = std::time::Duration::try_from_secs_f64(args.shutdown_grace.max(0.0))
                    .map_err(|e| anyhow::anyhow!("--shutdown-grace: {e}"))?;
                provisio::server::serve_until_signal(args.listen, state, tls, grace).await?;
                Ok(())
            });
        }
        Command::Transform(command) => cli::transform_test(command),
        Command::Config(command) => cli::config_check(command),
        Command::System(command) => runtime.block_on(cli::system(command)),
        Command::Plugin(command) => runtime.block_on(cli::plugin(command)),
        Command::Job(command) => runtime.block_on(cli::job(command)),
        Command::User(command) => runtime.block_on(cli::user(command)),
        Command::Realtime(command) => runtime.block_on(cli::realtime(command)),
        Command::Audit(command) => runtime.block_on(cli::audit(command)),
        Command::Notify(command) => runtime.block_on(cli::notify(command)),
    };
    if let Err(e) = result {
        eprintln!("{}", e.message);
        std::process::exit(e.code);
    }
    Ok(())
}
