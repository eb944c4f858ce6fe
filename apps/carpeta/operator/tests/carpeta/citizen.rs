//! citizen with hub-client and hub-sim: registration, the hub's refusals, queued registrations
//! settled by events, who may see and change what.

use std::time::Duration;

use serde_json::{Value, json};
use telar_carpeta::citizen::{self, CitizenConfig};
use telar_kit::KitConfig;

use crate::helpers::{Running, World, eventually};
use crate::hub::hub_client;

struct Setup {
    world: World,
    citizen: Running,
    hub_client: Running,
}

async fn setup(configure: impl FnOnce(&mut telar_carpeta::hub::HubClientConfig)) -> Setup {
    let mut world = World::new().await;
    let hub_client = hub_client(&mut world, configure).await;
    let tokens = world.tokens().await;
    let db = world.db("citizen").await;
    let app = citizen::build(
        db,
        world.bus.clone(),
        CitizenConfig {
            hub_client_url: hub_client.base.clone(),
            ..CitizenConfig::default()
        },
        world.verifier(),
        tokens,
        KitConfig::default(),
    )
    .await
    .unwrap();
    let citizen = world.run(app).await;
    Setup {
        world,
        citizen,
        hub_client,
    }
}

fn ana() -> Value {
    json!({"id": "1032456789", "name": "Ana Pérez", "address": "Calle 1 # 2-3", "email": "Ana.Perez@correo.co"})
}

async fn send(
    setup: &Setup,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = setup
        .world
        .http
        .request(method, setup.citizen.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_citizen_registers_and_is_at_the_hub_with_this_operator() {
    let setup = setup(|_| {}).await;
    let own = setup.world.token("1032456789", &["ciudadano"]);
    let (status, body) = send(
        &setup,
        reqwest::Method::POST,
        "/citizens",
        &own,
        Some(ana()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "registered");
    assert_eq!(body["email"], "ana.perez@correo.co");
    let state = setup.world.hub_state().await;
    assert_eq!(state["citizens"][0]["id"], "1032456789");
    assert_eq!(state["citizens"][0]["operator_name"], "Operador Telar");
    let (status, _) = send(
        &setup,
        reqwest::Method::POST,
        "/citizens",
        &own,
        Some(ana()),
    )
    .await;
    assert_eq!(status, 409, "registered twice");
    let (status, body) = send(
        &setup,
        reqwest::Method::GET,
        "/citizens/1032456789",
        &own,
        None,
    )
    .await;
    assert_eq!((status, body["name"].as_str()), (200, Some("Ana Pérez")));
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_nothing_is_stored() {
    let setup = setup(|_| {}).await;
    let staff = setup.world.token("op-1", &["operador"]);
    for (body, field) in [
        (
            json!({"id": "123", "name": "A", "address": "B", "email": "a@b.co"}),
            "id",
        ),
        (
            json!({"id": "1032456789", "name": "A", "address": "B", "email": "a@b.info"}),
            "email",
        ),
        (
            json!({"id": "1032456789", "name": " ", "address": "B", "email": "a@b.co"}),
            "name",
        ),
        (
            json!({"id": "1032456789", "name": "A", "address": "B", "email": "a@b.co", "role": "admin"}),
            "role",
        ),
    ] {
        let (status, problem) = send(
            &setup,
            reqwest::Method::POST,
            "/citizens",
            &staff,
            Some(body),
        )
        .await;
        assert_eq!(status, 422, "{problem}");
        assert!(
            problem.to_string().contains(field),
            "{field} named in {problem}"
        );
    }
    let state = setup.world.hub_state().await;
    assert_eq!(state["citizens"], json!([]), "nothing reached the hub");
    let (status, found) = send(&setup, reqwest::Method::GET, "/citizens?q=a", &staff, None).await;
    assert_eq!((status, found), (200, json!([])));
}

#[tokio::test]
async fn a_citizen_another_operator_holds_gets_the_hubs_reason_and_no_row() {
    let setup = setup(|_| {}).await;
    setup
        .world
        .http
        .post(setup.world.hub.url("/apis/registerCitizen"))
        .json(
            &json!({"id": 1032456789u64, "name": "Ana", "address": "x", "email": "ana@correo.co",
                      "operatorId": "65f0c0ffee0000000000000b", "operatorName": "Otro"}),
        )
        .send()
        .await
        .unwrap();
    let staff = setup.world.token("op-1", &["operador"]);
    let (status, problem) = send(
        &setup,
        reqwest::Method::POST,
        "/citizens",
        &staff,
        Some(ana()),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("ya se encuentra registrado")
    );
    let (status, _) = send(
        &setup,
        reqwest::Method::GET,
        "/citizens/1032456789",
        &staff,
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_registration_queued_at_the_hub_is_settled_when_the_hub_comes_back() {
    let setup = setup(|c| {
        c.breaker_failures = 1;
        c.breaker_open_secs = 1;
    })
    .await;
    setup
        .world
        .hub_faults(json!({"unavailable_for_ms": 60_000, "endpoints": ["registerCitizen"]}))
        .await;
    let own = setup.world.token("1032456789", &["ciudadano"]);
    let (status, body) = send(
        &setup,
        reqwest::Method::POST,
        "/citizens",
        &own,
        Some(ana()),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "pending_hub");
    assert!(body["hub_call"].is_i64());
    setup
        .world
        .http
        .delete(setup.world.hub.url("/control/faults"))
        .send()
        .await
        .unwrap();
    let registered = eventually(
        Duration::from_secs(40),
        "the citizen to be registered",
        || async {
            let (_, body) = send(
                &setup,
                reqwest::Method::GET,
                "/citizens/1032456789",
                &own,
                None,
            )
            .await;
            (body["status"] == "registered").then_some(body)
        },
    )
    .await;
    assert_eq!(registered["hub_call"], Value::Null);
    let state = setup.world.hub_state().await;
    assert_eq!(state["citizens"][0]["id"], "1032456789");
    let _ = &setup.hub_client;
}

#[tokio::test]
async fn citizens_reach_only_themselves_and_staff_reach_everyone() {
    let setup = setup(|_| {}).await;
    let own = setup.world.token("1032456789", &["ciudadano"]);
    let other = setup.world.token("1099999999", &["ciudadano"]);
    let staff = setup.world.token("op-1", &["operador"]);
    assert_eq!(
        send(
            &setup,
            reqwest::Method::POST,
            "/citizens",
            &other,
            Some(ana())
        )
        .await
        .0,
        403
    );
    assert_eq!(
        send(
            &setup,
            reqwest::Method::POST,
            "/citizens",
            &own,
            Some(ana())
        )
        .await
        .0,
        201
    );
    assert_eq!(
        send(
            &setup,
            reqwest::Method::GET,
            "/citizens/1032456789",
            &other,
            None
        )
        .await
        .0,
        403
    );
    assert_eq!(
        send(&setup, reqwest::Method::GET, "/citizens?q=ana", &own, None)
            .await
            .0,
        403
    );
    let (status, found) = send(
        &setup,
        reqwest::Method::GET,
        "/citizens?q=P%C3%A9rez",
        &staff,
        None,
    )
    .await;
    assert_eq!(
        (status, found.as_array().map(Vec::len)),
        (200, Some(1)),
        "{found}"
    );
    let (status, body) = send(
        &setup,
        reqwest::Method::PATCH,
        "/citizens/1032456789",
        &own,
        Some(json!({"address": "Carrera 7 # 8-9"})),
    )
    .await;
    assert_eq!(
        (status, body["address"].as_str()),
        (200, Some("Carrera 7 # 8-9"))
    );
    assert_eq!(
        send(
            &setup,
            reqwest::Method::PATCH,
            "/citizens/1032456789",
            &other,
            Some(json!({"address": "x"}))
        )
        .await
        .0,
        403
    );
    let no_token = setup
        .world
        .http
        .get(setup.citizen.url("/citizens/1032456789"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
}
