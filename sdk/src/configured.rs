//! [`ConfiguredConnector`]: a [`Connector`] whose operations take the system's settings, parsed once per
//! call by one function, instead of each operation parsing the [`Config`] itself.

use crate::{Config, Connector, Descriptor, EntityKind, Error, Page, PageRequest, Result};

/// A connector written against its own validated settings: implement [`settings`](Self::settings) once,
/// and every operation receives what it returned. Every type that implements it is a [`Connector`] (and can
/// be exported with [`export_connector!`](crate::export_connector)); an invalid configuration fails each
/// operation with the error `settings` answered, before any request is sent.
///
/// The operations mean exactly what they mean on [`Connector`]; the defaults answer
/// [`Error::Unsupported`].
///
/// ```no_run
/// use provisio_sdk::client::{Dialect, Probe, ScimClient};
/// use provisio_sdk::system::System;
/// use provisio_sdk::{Config, ConfiguredConnector, Descriptor, EntityKind, Operation, Result};
///
/// struct Mine;
///
/// impl ConfiguredConnector for Mine {
///     type Settings<'a> = ScimClient<'a>;
///
///     fn settings(cfg: &Config) -> Result<ScimClient<'_>> {
///         Ok(ScimClient::new(System::parse(cfg)?, Dialect::SCIM2))
///     }
///     fn describe() -> Descriptor {
///         Descriptor::new("mine", "0.1.0").entity_kinds([EntityKind::User]).operations([Operation::TestConnection])
///     }
///     fn test_connection(client: &ScimClient<'_>) -> Result<String> {
///         client.test_connection(&Probe::default())
///     }
/// }
///
/// provisio_sdk::export_connector!(Mine);
/// ```
pub trait ConfiguredConnector {
    /// The validated settings of one call; they may borrow the call's [`Config`].
    type Settings<'a>;

    /// Parses and validates the system's properties: [`Error::InvalidConfig`] naming the property that is
    /// wrong.
    fn settings(cfg: &Config) -> Result<Self::Settings<'_>>;

    /// See [`Connector::describe`].
    fn describe() -> Descriptor;

    /// See [`Connector::test_connection`].
    fn test_connection(settings: &Self::Settings<'_>) -> Result<String> {
        let _ = settings;
        Err(Error::unsupported("test-connection"))
    }

    /// See [`Connector::read`].
    fn read(settings: &Self::Settings<'_>, req: &PageRequest) -> Result<Page> {
        let _ = (settings, req);
        Err(Error::unsupported("read"))
    }

    /// See [`Connector::get`].
    fn get(settings: &Self::Settings<'_>, kind: EntityKind, id: &str) -> Result<String> {
        let _ = (settings, kind, id);
        Err(Error::unsupported("get"))
    }

    /// See [`Connector::create`].
    fn create(settings: &Self::Settings<'_>, kind: EntityKind, entity: &str) -> Result<String> {
        let _ = (settings, kind, entity);
        Err(Error::unsupported("create"))
    }

    /// See [`Connector::replace`].
    fn replace(settings: &Self::Settings<'_>, kind: EntityKind, id: &str, entity: &str) -> Result<String> {
        let _ = (settings, kind, id, entity);
        Err(Error::unsupported("replace"))
    }

    /// See [`Connector::patch`].
    fn patch(settings: &Self::Settings<'_>, kind: EntityKind, id: &str, operations: &str) -> Result<Option<String>> {
        let _ = (settings, kind, id, operations);
        Err(Error::unsupported("patch"))
    }

    /// See [`Connector::delete`].
    fn delete(settings: &Self::Settings<'_>, kind: EntityKind, id: &str) -> Result<()> {
        let _ = (settings, kind, id);
        Err(Error::unsupported("delete"))
    }
}

impl<T: ConfiguredConnector> Connector for T {
    fn describe() -> Descriptor {
        <T as ConfiguredConnector>::describe()
    }

    fn test_connection(cfg: &Config) -> Result<String> {
        <T as ConfiguredConnector>::test_connection(&T::settings(cfg)?)
    }

    fn read(cfg: &Config, req: &PageRequest) -> Result<Page> {
        <T as ConfiguredConnector>::read(&T::settings(cfg)?, req)
    }

    fn get(cfg: &Config, kind: EntityKind, id: &str) -> Result<String> {
        <T as ConfiguredConnector>::get(&T::settings(cfg)?, kind, id)
    }

    fn create(cfg: &Config, kind: EntityKind, entity: &str) -> Result<String> {
        <T as ConfiguredConnector>::create(&T::settings(cfg)?, kind, entity)
    }

    fn replace(cfg: &Config, kind: EntityKind, id: &str, entity: &str) -> Result<String> {
        <T as ConfiguredConnector>::replace(&T::settings(cfg)?, kind, id, entity)
    }

    fn patch(cfg: &Config, kind: EntityKind, id: &str, operations: &str) -> Result<Option<String>> {
        <T as ConfiguredConnector>::patch(&T::settings(cfg)?, kind, id, operations)
    }

    fn delete(cfg: &Config, kind: EntityKind, id: &str) -> Result<()> {
        <T as ConfiguredConnector>::delete(&T::settings(cfg)?, kind, id)
    }
}
