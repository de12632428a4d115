//! The proxy-style path across two SAP systems, through the real components and the transformation
//! engine: users and a group read from Identity Authentication (v2), the IAS read transformation, the
//! XSUAA write transformation, written to UAA — users land with the configured origin, and the group's
//! members are resolved to the UAA ids.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use provisio::connector::{EntityKind, PageRequest};
use provisio_tests::sim::{ias, uaa};
use provisio_transform::{Context, EntityIdResolver, Operation, Outcome, Transformation};
use serde_json::{Value, json};

use crate::support::{Connector, Service};

/// Source id → target id, as the link store will hold them.
#[derive(Default)]
struct Links(Mutex<HashMap<String, String>>);

impl EntityIdResolver for Links {
    fn resolve(
        &self,
        _entity_type: &str,
        source_id: &str,
        _source: Option<&str>,
        _target: Option<&str>,
    ) -> Option<String> {
        self.0.lock().expect("lock").get(source_id).cloned()
    }
}

async fn read_all(c: &Connector, kind: EntityKind) -> Vec<Value> {
    let mut request = PageRequest::first(kind, 100);
    let mut all = Vec::new();
    loop {
        let page = c.runtime.read(&c.plugin, &c.target, &request).await.expect("read");
        all.extend(page.entities);
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => return all,
        }
    }
}

fn transformation(doc: &Option<String>) -> Transformation {
    Transformation::from_str(doc.as_deref().expect("a default transformation")).expect("valid")
}

fn transformed(outcome: Outcome) -> (Value, BTreeMap<String, Value>) {
    match outcome {
        Outcome::Transformed { output, variables, .. } => (output, variables),
        other => panic!("not transformed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ias_users_and_groups_reach_xsuaa_with_the_configured_origin() {
    let service = Service::start().await;
    let ias_sim = ias::spawn(ias::Options {
        users: 6,
        groups: 2,
        ..Default::default()
    })
    .await
    .expect("ias");
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    let source = service
        .create_system(json!({"name": "IAS", "type": "ias", "role": "source", "properties": {
            "URL": ias_sim.base_url, "Authentication": "BasicAuthentication",
            "User": ias_sim.options().client_id, "Password": ias_sim.options().client_secret,
            "provisio.rate.limit": "1000"}}))
        .await;
    let target_properties = json!({
        "URL": uaa_sim.base_url, "OAuth2TokenServiceURL": uaa_sim.token_url.clone().expect("token url"),
        "User": uaa_sim.options().client_id, "Password": uaa_sim.options().client_secret,
        "xsuaa.origin": "sap.custom", "provisio.rate.limit": "1000"});
    let target = service
        .create_system(json!({"name": "XSUAA", "type": "xsuaa", "role": "target", "sources": [source], "properties": target_properties}))
        .await;
    let ias = service.connector(&source).await;
    let xsuaa = service.connector(&target).await;
    let read = transformation(&ias.plugin.descriptor.default_read_transformation);
    let write = transformation(&xsuaa.plugin.descriptor.default_write_transformation);
    let source_props: BTreeMap<String, String> = ias.target.properties.iter().cloned().collect();
    let target_props: BTreeMap<String, String> = xsuaa.target.properties.iter().cloned().collect();
    let links = Links::default();

    let users = read_all(&ias, EntityKind::User).await;
    assert_eq!(users.len(), 6);
    for native in &users {
        let (intermediate, vars) = transformed(read.apply("user", native, &Context::new(&source_props)));
        let source_id = vars["entityIdSourceSystem"].as_str().expect("source id").to_string();
        let ctx = Context::new(&target_props).operation(Operation::Create);
        let (out, _) = transformed(write.apply("user", &intermediate, &ctx));
        let created = xsuaa
            .runtime
            .create(&xsuaa.plugin, &xsuaa.target, EntityKind::User, &out)
            .await
            .expect("create in UAA");
        links
            .0
            .lock()
            .expect("lock")
            .insert(source_id, created["id"].as_str().expect("id").to_string());
    }
    for native in &users {
        let name = native["userName"].as_str().expect("userName");
        let in_uaa = uaa_sim.user_by_name(name).unwrap_or_else(|| panic!("{name} is in UAA"));
        assert_eq!(in_uaa["origin"], "sap.custom", "{in_uaa}");
        // UAA keeps one e-mail: the primary one.
        let emails = native["emails"].as_array().expect("emails");
        let primary = emails.iter().find(|e| e["primary"] == true).unwrap_or(&emails[0]);
        assert_eq!(in_uaa["emails"][0]["value"], primary["value"], "{in_uaa}");
    }

    let groups = read_all(&ias, EntityKind::Group).await;
    assert_eq!(groups.len(), 2);
    let mut provisioned_members = 0;
    for native in &groups {
        let (intermediate, _) = transformed(read.apply("group", native, &Context::new(&source_props)));
        let ctx = Context::new(&target_props)
            .operation(Operation::Create)
            .resolver(&links);
        let (out, _) = transformed(write.apply("group", &intermediate, &ctx));
        let created = xsuaa
            .runtime
            .create(&xsuaa.plugin, &xsuaa.target, EntityKind::Group, &out)
            .await
            .expect("create group");
        let gid = created["id"].as_str().expect("group id");
        let expected: Vec<String> = native["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["value"].as_str())
            .filter_map(|id| links.0.lock().expect("lock").get(id).cloned())
            .collect();
        let mut in_uaa = uaa_sim.member_ids(gid).expect("group in UAA");
        in_uaa.sort();
        let mut expected_sorted = expected.clone();
        expected_sorted.sort();
        assert_eq!(in_uaa, expected_sorted, "members of {}", native["displayName"]);
        provisioned_members += expected.len();
    }
    assert!(provisioned_members > 0, "the seeded groups have members");
}
