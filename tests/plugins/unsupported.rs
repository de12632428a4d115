// Included by the raw test plugins (`include!("../../unsupported.rs")`): the operations a plugin does not
// support, each answering `unsupported` and naming itself. Expanded inside `impl Guest for …`, where the
// plugin's own contract version's `Config`, `EntityKind` and `ConnectorError` are in scope.
macro_rules! unsupported {
    ($($operation:ident),+ $(,)?) => {
        $(unsupported!(@ $operation);)+
    };
    (@ read) => {
        fn read(_config: Config, _request: PageRequest) -> Result<Page, ConnectorError> {
            Err(ConnectorError::Unsupported("read".into()))
        }
    };
    (@ get) => {
        fn get(_config: Config, _kind: EntityKind, _id: String) -> Result<String, ConnectorError> {
            Err(ConnectorError::Unsupported("get".into()))
        }
    };
    (@ create) => {
        fn create(_config: Config, _kind: EntityKind, _entity: String) -> Result<String, ConnectorError> {
            Err(ConnectorError::Unsupported("create".into()))
        }
    };
    (@ replace) => {
        fn replace(_config: Config, _kind: EntityKind, _id: String, _entity: String) -> Result<String, ConnectorError> {
            Err(ConnectorError::Unsupported("replace".into()))
        }
    };
    (@ patch) => {
        fn patch(
            _config: Config,
            _kind: EntityKind,
            _id: String,
            _operations: String,
        ) -> Result<Option<String>, ConnectorError> {
            Err(ConnectorError::Unsupported("patch".into()))
        }
    };
    (@ delete) => {
        fn delete(_config: Config, _kind: EntityKind, _id: String) -> Result<(), ConnectorError> {
            Err(ConnectorError::Unsupported("delete".into()))
        }
    };
}
