//! `POST /authorize` with Carpeta's rule ("a citizen downloads only their own documents") and a
//! HeartGuard-style role matrix, with the deciding policies named.

use serde_json::{Value, json};
use telar_iam::{Iam, iam_routes};
use telar_kit::Service;

const SCHEMA: &str = r#"
entity User { roles: Set<String> };
entity Document { owner: User };
entity Patient { doctors: Set<User>, user: User };
action "download" appliesTo { principal: User, resource: Document, context: {} };
action "readVitals" appliesTo { principal: User, resource: Patient, context: {} };
action "manageUsers" appliesTo { principal: User, resource: Patient, context: {} };
"#;

const POLICIES: &str = r#"
@id("citizen-downloads-own")
permit (principal, action == Action::"download", resource is Document) when { resource.owner == principal };

@id("patient-reads-own-vitals")
permit (principal, action == Action::"readVitals", resource is Patient)
  when { principal.roles.contains("paciente") && resource.user == principal };

@id("doctor-reads-assigned")
permit (principal, action == Action::"readVitals", resource is Patient)
  when { principal.roles.contains("medico") && resource.doctors.contains(principal) };

@id("admin-manages")
permit (principal, action == Action::"manageUsers", resource)
  when { principal.roles.contains("admin") };
"#;

fn entities() -> Value {
    let user = |id: &str, roles: &[&str]| json!({"uid": {"type": "User", "id": id}, "attrs": {"roles": roles}, "parents": []});
    json!([
        user("ana", &["ciudadano", "paciente"]),
        user("luis", &["ciudadano"]),
        user("dra-rios", &["medico"]),
        user("dr-paz", &["medico"]),
        user("root", &["admin"]),
        {"uid": {"type": "Document", "id": "diploma"}, "attrs": {"owner": {"__entity": {"type": "User", "id": "ana"}}}, "parents": []},
        {"uid": {"type": "Patient", "id": "p-ana"},
         "attrs": {"user": {"__entity": {"type": "User", "id": "ana"}},
                   "doctors": [{"__entity": {"type": "User", "id": "dra-rios"}}]},
         "parents": []}
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_matrix_holds_over_http() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("schema.cedarschema"), SCHEMA).expect("schema");
    std::fs::write(dir.path().join("rules.cedar"), POLICIES).expect("policies");
    let iam = Iam::load(dir.path()).expect("load");
    let server = telar_testkit::serve(Service::new("iam").api(iam_routes(iam))).await;
    let client = telar_testkit::client();
    let ask = |who: &str, action: &str, resource: &str| {
        let body = json!({
            "principal": format!("User::\"{who}\""),
            "action": format!("Action::\"{action}\""),
            "resource": resource,
            "entities": entities(),
        });
        let request = client.post(server.url("/authorize")).json(&body);
        async move {
            let response = request.send().await.expect("send");
            assert_eq!(response.status(), 200);
            let answer: Value = response.json().await.expect("json");
            (
                answer["allowed"].as_bool().unwrap_or(false),
                answer["policies"].clone(),
            )
        }
    };
    let document = "Document::\"diploma\"";
    let patient = "Patient::\"p-ana\"";
    let matrix = [
        ("ana", "download", document, true),
        ("luis", "download", document, false),
        ("root", "download", document, false),
        ("ana", "readVitals", patient, true),
        ("dra-rios", "readVitals", patient, true),
        ("dr-paz", "readVitals", patient, false),
        ("luis", "readVitals", patient, false),
        ("root", "manageUsers", patient, true),
        ("dra-rios", "manageUsers", patient, false),
    ];
    for (who, action, resource, expected) in matrix {
        assert_eq!(
            ask(who, action, resource).await.0,
            expected,
            "{who} {action} {resource}"
        );
    }
    let (_, why) = ask("ana", "download", document).await;
    assert_eq!(
        why,
        json!(["citizen-downloads-own"]),
        "the deciding policy is named"
    );

    let unknown = client
        .post(server.url("/authorize"))
        .json(&json!({"principal": "User::\"ana\"", "action": "Action::\"delete\"", "resource": document}))
        .send()
        .await
        .expect("send");
    assert_eq!(unknown.status(), 422, "an action the schema does not know");
    let typo = client
        .post(server.url("/authorize"))
        .json(&json!({"principal": "User::\"ana\"", "action": "Action::\"download\"", "resourse": document}))
        .send()
        .await
        .expect("send");
    assert_eq!(typo.status(), 422, "unknown fields are refused");
    server.shutdown.trigger();
}
