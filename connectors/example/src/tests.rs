//! The template's own tests: the SDK's harness answers its requests with canned exchanges.

use super::*;
use provisio_sdk::testing::{Exchange, Harness};
use serde_json::json;

#[test]
fn reads_pages_and_writes() {
    let cfg = Config::new("t").with("URL", "http://example/v1");
    let req = PageRequest {
        kind: EntityKind::User,
        cursor: None,
        page_size: 2,
        filter: None,
        delta_since: None,
    };
    let mut h = Harness::new();
    h.expect(
        Exchange::get("users?offset=0&limit=2").respond(200, json!({"users": [{"id": "1"}, {"id": "2"}], "total": 3})),
    );
    let page = h.run(|| Example::read(&cfg, &req)).expect("page");
    assert_eq!((page.entities.len(), page.next_cursor.as_deref()), (2, Some("2")));
    h.expect(
        Exchange::post("users")
            .body_json(json!({"userName": "a"}))
            .respond(201, json!({"id": "9", "userName": "a"})),
    );
    assert!(
        h.run(|| Example::create(&cfg, EntityKind::User, r#"{"userName":"a"}"#))
            .expect("created")
            .contains("\"9\"")
    );
    h.expect(Exchange::delete("users/9").respond(404, json!({"message": "gone"})));
    assert!(matches!(
        h.run(|| Example::delete(&cfg, EntityKind::User, "9")),
        Err(Error::NotFound(_))
    ));
}
