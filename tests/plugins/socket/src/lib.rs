//! A connector that opens a TCP connection with `std::net` instead of going through the host. The
//! component imports `wasi:sockets`, which the host does not link: it must be refused when it is loaded,
//! with the import named.

use provisio_sdk::{Config, Connector, Descriptor, EntityKind, Error, Operation, Result};

pub struct Socket;

provisio_sdk::export_connector!(Socket);

impl Connector for Socket {
    fn describe() -> Descriptor {
        Descriptor::new("socket", "0.1.0")
            .entity_kinds([EntityKind::User])
            .operations([Operation::TestConnection])
    }

    fn test_connection(_cfg: &Config) -> Result<String> {
        match std::net::TcpStream::connect("127.0.0.1:1") {
            Ok(_) => Ok("connected around the host".into()),
            Err(e) => Err(Error::rejected(0, format!("socket failed: {e}"))),
        }
    }
}
