//! `provisio-sim <uaa|jam|ias> --listen 127.0.0.1:PORT [--users N] [--groups N] [--rate-limit R]
//! [--client-id ID --client-secret S] [--realtime-target KIND,VERSION,URL,USER,PASSWORD]…`: runs one
//! simulator until Ctrl-C, after printing the URLs and credentials a connector needs.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};
use provisio_tests::sim::{ias, jam, uaa};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum System {
    /// Cloud Foundry UAA / SAP BTP XSUAA (OAuth client credentials, SCIM 1.0).
    Uaa,
    /// SAP Jam Collaboration / Work Zone (OAuth client credentials, SCIM 2.0).
    Jam,
    /// SAP Cloud Identity Services – Identity Authentication (Basic, SCIM v1 and v2).
    Ias,
}

/// In-memory simulators of the remote systems Provisio's connectors talk to.
#[derive(Debug, Parser)]
#[command(name = "provisio-sim", version)]
struct Args {
    /// Which system to simulate.
    system: System,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Users to seed.
    #[arg(long, default_value_t = 0)]
    users: usize,
    /// Groups to seed.
    #[arg(long, default_value_t = 0)]
    groups: usize,
    /// Rate limit in the system's unit: requests/second for uaa (BTP: 3), requests/minute for
    /// jam (200) and ias (200; IAS then delays up to 1.4x and refuses beyond).
    #[arg(long)]
    rate_limit: Option<f64>,
    /// uaa only: requests above the rate that queue (BTP queues before answering 429).
    #[arg(long, default_value_t = 0)]
    rate_limit_queue: usize,
    /// uaa only: milliseconds every write (create, replace, patch, delete, member change) takes.
    #[arg(long, default_value_t = 0)]
    write_latency_ms: u64,
    /// uaa only: BTP XSUAA flavour, groups (role collections) addressed by name.
    #[arg(long)]
    xsuaa: bool,
    /// Jam only: requests/hour (Jam documents 13000).
    #[arg(long)]
    rate_limit_per_hour: Option<u32>,
    /// Client id (Basic user for IAS).
    #[arg(long)]
    client_id: Option<String>,
    /// Client secret (Basic password for IAS).
    #[arg(long)]
    client_secret: Option<String>,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// ias only, repeatable: a Real-Time Provisioning target that every user change is pushed to,
    /// `KIND,VERSION,URL,USER,PASSWORD[,TOKEN_URL[,INITIATOR]]`. KIND `ips` (URL = the SCIM URL
    /// …/ipsproxy/api/v1/systems/<id>/entities/user, VERSION 1 or 2) or `jam` (URL = its SCIM base,
    /// VERSION ignored); USER/PASSWORD are Basic credentials, or the OAuth client with TOKEN_URL;
    /// INITIATOR: changes made by this client are not pushed to the target (loop guard).
    #[arg(long = "realtime-target", value_name = "KIND,VERSION,URL,USER,PASSWORD")]
    realtime_targets: Vec<ias::RealtimeTarget>,
}

fn per_minute(r: Option<f64>) -> Option<u32> {
    r.map(|v| v.max(1.0).round() as u32)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let a = Args::parse();
    match a.system {
        System::Uaa => {
            let d = uaa::Options::default();
            let o = uaa::Options {
                users: a.users,
                groups: a.groups,
                rate_limit_per_second: a.rate_limit,
                rate_limit_queue: a.rate_limit_queue,
                xsuaa_group_ids: a.xsuaa,
                client_id: a.client_id.unwrap_or(d.client_id.clone()),
                client_secret: a.client_secret.unwrap_or(d.client_secret.clone()),
                seed: a.seed,
                write_latency: std::time::Duration::from_millis(a.write_latency_ms),
                ..d
            };
            let sim = uaa::spawn_on(o.clone(), a.listen).await?;
            println!(
                "UAA/XSUAA simulator ({} users, {} groups)",
                sim.user_count(),
                sim.group_count()
            );
            println!("  URL                   = {}", sim.base_url);
            println!(
                "  OAuth2TokenServiceURL = {}",
                sim.token_url.clone().unwrap_or_default()
            );
            println!("  User (client id)      = {}", o.client_id);
            println!("  Password (secret)     = {}", o.client_secret);
            println!("  scopes                = {}", o.scopes.join(" "));
            if let Some(r) = o.rate_limit_per_second {
                println!("  rate limit            = {r} requests/s on /Users and /Groups");
            }
            if !o.write_latency.is_zero() {
                println!("  write latency         = {} ms", o.write_latency.as_millis());
            }
            wait().await;
            sim.shutdown().await;
        }
        System::Jam => {
            let d = jam::Options::default();
            let o = jam::Options {
                users: a.users,
                groups: a.groups,
                rate_limit_per_minute: per_minute(a.rate_limit),
                rate_limit_per_hour: a.rate_limit_per_hour,
                client_id: a.client_id.unwrap_or(d.client_id.clone()),
                client_secret: a.client_secret.unwrap_or(d.client_secret.clone()),
                seed: a.seed,
                ..d
            };
            let sim = jam::spawn_on(o.clone(), a.listen).await?;
            println!(
                "SAP Jam simulator ({} users, {} groups)",
                sim.user_count(),
                sim.group_count()
            );
            println!("  URL                   = {}", sim.base_url);
            println!("  SCIM base             = {}", sim.scim_url());
            println!(
                "  OAuth2TokenServiceURL = {}",
                sim.token_url.clone().unwrap_or_default()
            );
            println!("  User (client key)     = {}", o.client_id);
            println!("  Password (secret)     = {}", o.client_secret);
            wait().await;
            sim.shutdown().await;
        }
        System::Ias => {
            let d = ias::Options::default();
            let o = ias::Options {
                users: a.users,
                groups: a.groups,
                rate_limit_per_minute: per_minute(a.rate_limit),
                client_id: a.client_id.unwrap_or(d.client_id.clone()),
                client_secret: a.client_secret.unwrap_or(d.client_secret.clone()),
                seed: a.seed,
                realtime_targets: a.realtime_targets.clone(),
                ..d
            };
            let sim = ias::spawn_on(o.clone(), a.listen).await?;
            println!(
                "Identity Authentication simulator ({} users, {} groups)",
                sim.user_count(),
                sim.group_count()
            );
            println!("  URL                   = {}", sim.base_url);
            println!("  v2 (ias.api.version=2) = {}/scim/Users, /scim/Groups", sim.base_url);
            println!(
                "  v1 (ias.api.version=1) = {}/service/scim/Users, /service/scim/Groups",
                sim.base_url
            );
            println!("  Authentication        = BasicAuthentication");
            println!("  User (client id)      = {}", o.client_id);
            println!("  Password (secret)     = {}", o.client_secret);
            println!("  (optional OAuth token URL: {})", sim.oauth_token_url());
            for (i, t) in sim.realtime_targets() {
                println!(
                    "  real-time target {i}    = {:?} {} ({})",
                    t.kind, t.url, t.display_name
                );
            }
            wait().await;
            sim.shutdown().await;
        }
    }
    Ok(())
}

async fn wait() {
    println!("Serving until Ctrl-C.");
    let _ = tokio::signal::ctrl_c().await;
    println!("Stopping.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_command_line() {
        let a = Args::try_parse_from([
            "provisio-sim",
            "uaa",
            "--listen",
            "127.0.0.1:9999",
            "--users",
            "10",
            "--groups",
            "2",
            "--rate-limit",
            "3",
            "--client-id",
            "id",
            "--client-secret",
            "s",
        ])
        .unwrap();
        assert!(matches!(a.system, System::Uaa));
        assert_eq!((a.users, a.groups, a.rate_limit), (10, 2, Some(3.0)));
        assert!(Args::try_parse_from(["provisio-sim", "ldap"]).is_err());
        let a = Args::try_parse_from([
            "provisio-sim",
            "ias",
            "--realtime-target",
            "ips,2,http://127.0.0.1:1/ipsproxy/api/v1/systems/s/entities/user,u,p",
            "--realtime-target",
            "jam,,http://127.0.0.1:2/api/v1/scim,key,secret",
        ])
        .unwrap();
        assert_eq!(a.realtime_targets.len(), 2);
        assert!(Args::try_parse_from(["provisio-sim", "ias", "--realtime-target", "ips,2,http://x/y,u,p"]).is_err());
        assert_eq!(per_minute(Some(200.0)), Some(200));
    }
}
