//! The HTTP/JSON API: the product documentation's cURL examples replayed as written, the same
//! answers as gRPC for the same request, framing refused with clear errors, and every answer
//! checked against the OpenAPI document the services serve.

use std::sync::LazyLock;

use serde_json::{Value, json};
use tollgate_e2e::{HttpAnswer, http_json};

use crate::*;

/// The documentation's cURL examples, copied verbatim (see the file's header).
const SEED_EXAMPLES: &str = include_str!("seed_curl_examples.txt");

/// The host the documentation's examples name.
const SEED_HOST: &str = "https://api.cloud.flexprice.io";

static OPENAPI: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(tollgate::http::OPENAPI).unwrap());

/// (document, command) for each example in [`SEED_EXAMPLES`].
fn seed_examples() -> Vec<(String, String)> {
    SEED_EXAMPLES
        .split("\n## ")
        .skip(1)
        .map(|block| {
            let (document, command) = block.split_once('\n').unwrap();
            (document.trim().to_owned(), command.trim_end().to_owned())
        })
        .collect()
}

/// The argument after `flag` in a curl command.
fn curl_argument<'a>(command: &'a str, flag: &str) -> &'a str {
    let rest = &command[command.find(flag).unwrap() + flag.len()..];
    rest.split_whitespace().next().unwrap()
}

/// Runs a documentation example with the host and key filled in, through the real curl, and
/// checks the answer against the OpenAPI document.
async fn replay(command: &str, host: &str, key: &str) -> HttpAnswer {
    let command = command.replace(SEED_HOST, host).replace("<api-key>", key);
    let script = format!("{command} --silent --show-error --write-out '\\n%{{http_code}}'");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "curl failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (body, status) = stdout.rsplit_once('\n').unwrap();
    let answer = HttpAnswer {
        status: status.trim().parse().unwrap(),
        body: serde_json::from_str(body).unwrap(),
    };
    let url = curl_argument(&command, "--url ");
    conforms(curl_argument(&command, "--request "), url, &answer);
    answer
}

/// An HTTP request, its answer checked against the OpenAPI document.
async fn call(method: &str, url: &str, key: Option<&str>, body: Option<Value>) -> HttpAnswer {
    let answer = http_json(method, url, key, body.as_ref()).await;
    conforms(method, url, &answer);
    answer
}

/// Whether `path` is an instance of the OpenAPI path template `template`.
fn matches_template(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
}

/// Asserts that the document lists `answer`'s status for `method url` and that its body fits
/// the schema given there (formats such as date-time included).
fn conforms(method: &str, url: &str, answer: &HttpAnswer) {
    let path = url.split_once("://").map_or(url, |(_, rest)| {
        &rest[rest.find('/').unwrap_or(rest.len())..]
    });
    let path = path.split('?').next().unwrap();
    let paths = OPENAPI["paths"].as_object().unwrap();
    // A literal segment beats a parameter, as the router decides (`/v1/events/bulk`).
    let mut candidates: Vec<_> = paths.keys().filter(|t| matches_template(t, path)).collect();
    candidates.sort_by_key(|t| t.matches('{').count());
    let template = candidates
        .first()
        .unwrap_or_else(|| panic!("the OpenAPI document has no path for {path}"));
    let operation = &paths[template.as_str()][method.to_ascii_lowercase()];
    assert!(
        operation.is_object(),
        "the document has no {method} {template}"
    );
    let response = &operation["responses"][answer.status.to_string()];
    assert!(
        response.is_object(),
        "{method} {template} answered {}, which the document does not list: {}",
        answer.status,
        answer.body
    );
    let reference = response["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap();
    // The document is the schema's root, so that its references resolve.
    let mut schema = OPENAPI.clone();
    schema["$ref"] = json!(reference);
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&answer.body)
        .map(|e| format!("{e} (at {})", e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {template} {}: the body does not fit {reference}: {errors:?}\n{}",
        answer.status,
        answer.body
    );
}

fn rfc3339(t: Option<&prost_types::Timestamp>) -> Value {
    json!(tollgate::http::rfc3339::from_proto(t).unwrap())
}

async fn the_documentation_s_curl_examples_answer_as_documented(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    let (identity, events) = (stack.identity_http(), stack.events_http());
    let admin = stack.admin_key.as_str();
    let examples = seed_examples();
    assert_eq!(examples.len(), 3, "{examples:?}");
    let [users, own_key, account_key] = [0, 1, 2].map(|i| examples[i].1.as_str());

    // As written, with only the host and the key filled in, each example sends `<string>`
    // where a value belongs: refused as bad input, naming the field, in the documented shape.
    for ((document, command), field) in examples.iter().zip(["roles", "expires_at", "expires_at"]) {
        let answer = replay(command, &identity, admin).await;
        assert_eq!(answer.status, 400, "{document}: {answer:?}");
        assert_eq!(answer.body["field"], field, "{document}: {answer:?}");
        assert!(answer.body["error"].is_string(), "{answer:?}");
    }

    // The placeholders filled with the documentation's own values. A person's account takes
    // no roles ("user accounts have full access"):
    let person_with_role = users.replace("\"<string>\"", "\"event_ingestor\"");
    let answer = replay(&person_with_role, &identity, admin).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["field"], "roles");
    // "Solution: make sure your request includes at least one valid role" with type
    // service_account, and the two documented errors.
    let service_account = |roles: &str| {
        users
            .replace("[\n      \"<string>\"\n    ]", roles)
            .replace("\"type\": \"user\"", "\"type\": \"service_account\"")
    };
    let answer = replay(&service_account("[]"), &identity, admin).await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.body["error"],
        "Service accounts must have at least one role assigned"
    );
    let answer = replay(&service_account("[\"custom_role\"]"), &identity, admin).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["error"], "Invalid role: custom_role");
    let answer = replay(&service_account("[\"event_ingestor\"]"), &identity, admin).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(answer.body["type"], "service_account");
    assert_eq!(answer.body["roles"], json!(["event_ingestor"]));
    let account_id = answer.body["id"].as_str().unwrap().to_owned();
    assert!(account_id.starts_with("usr_"), "{answer:?}");

    // A key for the caller's own account, and one for the service account: the documented
    // response, the secret shown once, the account's roles copied.
    let expires =
        tollgate::http::rfc3339::format(tollgate::time::now() + chrono::Duration::days(90));
    let filled = |command: &str| {
        command
            .replacen("\"<string>\"", &format!("\"{expires}\""), 1)
            .replacen("\"<string>\"", "\"Event Service Production Key\"", 1)
            .replacen("\"<string>\"", &format!("\"{account_id}\""), 1)
    };
    let mine = replay(&filled(own_key), &identity, admin).await;
    assert_eq!(mine.status, 201, "{mine:?}");
    assert!(
        mine.body["api_key"]
            .as_str()
            .unwrap()
            .starts_with("sk_live_")
    );
    assert_eq!(mine.body["expires_at"], json!(expires));
    let theirs = replay(&filled(account_key), &identity, admin).await;
    assert_eq!(theirs.status, 201, "{theirs:?}");
    assert!(theirs.body["id"].as_str().unwrap().starts_with("sec_"));
    assert_eq!(theirs.body["name"], "Event Service Production Key");
    assert_eq!(theirs.body["roles"], json!(["event_ingestor"]));
    assert!(theirs.body["created_at"].is_string());
    let ingestor = theirs.body["api_key"].as_str().unwrap();

    // "✅ Can send events ❌ Cannot read events (403 Forbidden) ❌ cannot access other resources"
    let event = json!({"event_name": "api_call", "external_customer_id": "cus_1"});
    let sent = call(
        "POST",
        &format!("{events}/v1/events"),
        Some(ingestor),
        Some(event),
    )
    .await;
    assert_eq!(sent.status, 200, "{sent:?}");
    let read = call("GET", &format!("{events}/v1/events"), Some(ingestor), None).await;
    assert_eq!(read.status, 403, "{read:?}");
    assert!(read.body["error"].as_str().unwrap().contains("event:read"));
    let other = call("GET", &format!("{identity}/v1/users"), Some(ingestor), None).await;
    assert_eq!(other.status, 403, "{other:?}");
    // "Check what roles the service account has: GET /v1/users/usr_abc123"
    let account = call(
        "GET",
        &format!("{identity}/v1/users/{account_id}"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(account.body["roles"], json!(["event_ingestor"]));
}

/// The HTTP status and body a gRPC refusal stands for.
fn assert_same_refusal(http: &HttpAnswer, grpc: &tonic::Status) {
    assert_eq!(
        http.status,
        tollgate::http::http_status(grpc.code()).as_u16(),
        "{http:?} vs {grpc:?}"
    );
    assert_eq!(http.body["error"], grpc.message(), "{http:?} vs {grpc:?}");
}

async fn http_and_grpc_answer_alike(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    let (identity, events) = (stack.identity_http(), stack.events_http());
    let admin = stack.admin_key.as_str();
    let (_, reader) = stack.service_account_key(&["event_reader"]).await;

    // Refusals: the same status and text.
    let grpc = stack
        .users()
        .create_user(with_key(
            admin,
            id::CreateUserRequest {
                r#type: id::UserType::ServiceAccount.into(),
                roles: vec!["custom_role".into()],
                name: String::new(),
            },
        ))
        .await
        .unwrap_err();
    let http = call(
        "POST",
        &format!("{identity}/v1/users"),
        Some(admin),
        Some(json!({"type": "service_account", "roles": ["custom_role"]})),
    )
    .await;
    assert_same_refusal(&http, &grpc);
    assert_eq!(http.body["field"], "roles");

    let mut bad = event("api_call", "cus_1", 1.0);
    bad.event_name = " ".into();
    let grpc = stack
        .events()
        .ingest_events(with_key(
            admin,
            ev::IngestEventsRequest {
                events: vec![event("api_call", "cus_1", 1.0), bad],
            },
        ))
        .await
        .unwrap_err();
    let http = call(
        "POST",
        &format!("{events}/v1/events/bulk"),
        Some(admin),
        Some(json!({"events": [
            {"event_name": "api_call", "external_customer_id": "cus_1", "properties": {"tokens": 1.0}},
            {"event_name": " ", "external_customer_id": "cus_1"},
        ]})),
    )
    .await;
    assert_same_refusal(&http, &grpc);
    assert_eq!(http.body["field"], "events[1].event_name");

    let grpc = can_write(&stack, &reader).await.unwrap_err();
    let http = call(
        "POST",
        &format!("{events}/v1/events"),
        Some(&reader),
        Some(json!({"event_name": "api_call", "external_customer_id": "cus_1"})),
    )
    .await;
    assert_same_refusal(&http, &grpc);
    let grpc = stack
        .events()
        .get_event(with_key(
            admin,
            ev::GetEventRequest {
                event_id: "evt_missing".into(),
            },
        ))
        .await
        .unwrap_err();
    let http = call(
        "GET",
        &format!("{events}/v1/events/evt_missing"),
        Some(admin),
        None,
    )
    .await;
    assert_same_refusal(&http, &grpc);

    // Answers: what one path wrote, the other reads the same.
    let sent = call(
        "POST",
        &format!("{events}/v1/events"),
        Some(admin),
        Some(json!({
            "event_id": "evt-http-1",
            "event_name": "api_call",
            "external_customer_id": "cus_7",
            "timestamp": "2026-01-02T03:04:05.123456Z",
            "properties": {"tokens": 12.5, "model": "small", "tags": ["a", "b"]},
            "source": "http",
        })),
    )
    .await;
    assert_eq!(
        sent.body,
        json!({"event_id": "evt-http-1", "duplicate": false})
    );
    stack
        .ingest(admin, event("api_call", "cus_7", 2.0))
        .await
        .unwrap();
    let via_grpc = stack
        .events()
        .get_event(with_key(
            admin,
            ev::GetEventRequest {
                event_id: "evt-http-1".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    let via_http = call(
        "GET",
        &format!("{events}/v1/events/evt-http-1"),
        Some(admin),
        None,
    )
    .await;
    let properties = tollgate::json::struct_to_map(via_grpc.properties.as_ref().unwrap()).unwrap();
    assert_eq!(
        via_http.body,
        json!({
            "event_id": via_grpc.event_id,
            "event_name": via_grpc.event_name,
            "external_customer_id": via_grpc.external_customer_id,
            "timestamp": rfc3339(via_grpc.timestamp.as_ref()),
            "properties": properties,
            "source": via_grpc.source,
            "ingested_at": rfc3339(via_grpc.ingested_at.as_ref()),
        })
    );
    assert_eq!(via_http.body["timestamp"], "2026-01-02T03:04:05.123456Z");

    let grpc_list = stack
        .events()
        .list_events(with_key(
            admin,
            ev::ListEventsRequest {
                external_customer_id: "cus_7".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let http_list = call(
        "GET",
        &format!("{events}/v1/events?external_customer_id=cus_7&page_size=10"),
        Some(&reader),
        None,
    )
    .await;
    let http_ids: Vec<&str> = http_list.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let grpc_ids: Vec<&str> = grpc_list
        .events
        .iter()
        .map(|e| e.event_id.as_str())
        .collect();
    assert_eq!(http_ids, grpc_ids);
    assert_eq!(http_ids.len(), 2);

    let grpc_usage = stack
        .events()
        .get_usage(with_key(
            admin,
            ev::GetUsageRequest {
                event_name: "api_call".into(),
                start_time: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: 0,
                }),
                end_time: Some(tollgate::time::to_proto(
                    tollgate::time::now() + chrono::Duration::hours(1),
                )),
                aggregation: ev::Aggregation::Sum.into(),
                property: "tokens".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let end = tollgate::http::rfc3339::format(tollgate::time::now() + chrono::Duration::hours(1));
    let http_usage = call(
        "POST",
        &format!("{events}/v1/events/usage"),
        Some(admin),
        Some(json!({
            "event_name": "api_call",
            "start_time": "1970-01-01T00:00:00Z",
            "end_time": end,
            "aggregation": "sum",
            "property": "tokens",
        })),
    )
    .await;
    assert_eq!(http_usage.body["total"], json!(grpc_usage.total));
    assert_eq!(grpc_usage.total, 14.5);

    // Meters: created over HTTP, read over both.
    let created = call(
        "POST",
        &format!("{events}/v1/meters"),
        Some(admin),
        Some(json!({"key": "tokens", "event_name": "api_call", "aggregation": "sum", "property": "tokens"})),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    let got = call(
        "GET",
        &format!("{events}/v1/meters/tokens"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(got.body["aggregation"], "sum");
    let listed = call("GET", &format!("{events}/v1/meters"), Some(admin), None).await;
    assert_eq!(listed.body["meters"][0]["key"], "tokens");
    let deleted = call(
        "DELETE",
        &format!("{events}/v1/meters/tokens"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(deleted.status, 200, "{deleted:?}");

    // Keys: listed, read, rotated and deleted over HTTP; gRPC sees the same.
    let keys = call(
        "GET",
        &format!("{identity}/v1/secrets/api/keys"),
        Some(admin),
        None,
    )
    .await;
    let reader_id = keys.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["roles"] == json!(["event_reader"]))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let grpc_key = stack
        .keys()
        .get_api_key(with_key(
            admin,
            id::GetApiKeyRequest {
                id: reader_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap();
    let http_key = call(
        "GET",
        &format!("{identity}/v1/secrets/api/keys/{reader_id}"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(http_key.body["display_hint"], grpc_key.display_hint);
    assert_eq!(
        http_key.body["created_at"],
        rfc3339(grpc_key.created_at.as_ref())
    );
    let rotated = call(
        "POST",
        &format!("{identity}/v1/secrets/api/keys/{reader_id}/rotate"),
        Some(admin),
        Some(json!({"grace_period": "0s"})),
    )
    .await;
    assert_eq!(rotated.status, 201, "{rotated:?}");
    assert_eq!(rotated.body["key"]["roles"], json!(["event_reader"]));
    let new_id = rotated.body["key"]["id"].as_str().unwrap();
    let gone = call(
        "DELETE",
        &format!("{identity}/v1/secrets/api/keys/{new_id}"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(gone.status, 200, "{gone:?}");
    let err = stack
        .keys()
        .get_api_key(with_key(admin, id::GetApiKeyRequest { id: new_id.into() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let roles = call("GET", &format!("{identity}/v1/roles"), Some(admin), None).await;
    assert_eq!(roles.body["roles"][0]["name"], "event_ingestor");
}

async fn http_framing_is_refused_with_clear_errors(backend: Backend) {
    let stack = Stack::start_with(backend, |settings| {
        settings.limits.max_message_size = 64 << 10;
    })
    .await;
    let (identity, events) = (stack.identity_http(), stack.events_http());
    let admin = stack.admin_key.as_str();

    // A form body (curl's default for --data) is not JSON.
    let form = tokio::task::spawn_blocking({
        let url = format!("{events}/v1/events");
        let key = format!("x-api-key: {admin}");
        move || {
            std::process::Command::new("curl")
                .args(["--silent", "--write-out", "\n%{http_code}", "--header"])
                .args([key.as_str(), "--data", "event_name=x", url.as_str()])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let form = String::from_utf8(form.stdout).unwrap();
    assert!(form.ends_with("\n415"), "{form}");
    assert!(form.contains("Content-Type: application/json"), "{form}");

    // Larger than the bound.
    let big = json!({"events": [{
        "event_name": "api_call",
        "external_customer_id": "cus_1",
        "properties": {"blob": "x".repeat(100 << 10)},
    }]});
    let answer = call(
        "POST",
        &format!("{events}/v1/events/bulk"),
        Some(admin),
        Some(big.clone()),
    )
    .await;
    assert_eq!(answer.status, 413, "{answer:?}");
    // identity-service's bodies are small: its bound is 64 KiB whatever the message size.
    let long_name = json!({"type": "user", "name": "x".repeat(65 << 10)});
    let answer = call(
        "POST",
        &format!("{identity}/v1/users"),
        Some(admin),
        Some(long_name),
    )
    .await;
    assert_eq!(answer.status, 413, "{answer:?}");
    // Without a key the body is not even read: the key is checked first, as for gRPC.
    let answer = call("POST", &format!("{events}/v1/events/bulk"), None, Some(big)).await;
    assert_eq!(answer.status, 401, "{answer:?}");

    // Fields the operation does not know, wrong types and bad times are named.
    let answer = call(
        "POST",
        &format!("{identity}/v1/secrets/api/keys"),
        Some(admin),
        Some(json!({"name": "k", "service_acount_id": "usr_x"})),
    )
    .await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `service_acount_id`"),
        "{answer:?}"
    );
    let answer = call(
        "POST",
        &format!("{events}/v1/events"),
        Some(admin),
        Some(json!({"event_name": "a", "external_customer_id": "c", "timestamp": "yesterday"})),
    )
    .await;
    assert_eq!(
        (answer.status, answer.body["field"].as_str()),
        (400, Some("timestamp"))
    );
    let answer = call(
        "POST",
        &format!("{events}/v1/events"),
        Some(admin),
        Some(json!({"event_name": "a", "external_customer_id": "c", "properties": [1]})),
    )
    .await;
    assert_eq!(
        (answer.status, answer.body["field"].as_str()),
        (400, Some("properties"))
    );
    let answer = call(
        "GET",
        &format!("{events}/v1/events?page_size=many"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(
        (answer.status, answer.body["field"].as_str()),
        (400, Some("page_size"))
    );

    // Keys: none, malformed, and the Bearer form.
    let answer = call("GET", &format!("{identity}/v1/roles"), None, None).await;
    assert_eq!(answer.status, 401);
    assert!(answer.body["error"].as_str().unwrap().contains("missing"));
    let answer = call(
        "GET",
        &format!("{events}/v1/events"),
        Some("sk_live_nope"),
        None,
    )
    .await;
    assert_eq!(answer.status, 401);
    assert!(answer.body["error"].as_str().unwrap().contains("malformed"));
    let bearer = tokio::task::spawn_blocking({
        let url = format!("{events}/v1/events");
        let header = format!("Authorization: Bearer {admin}");
        move || {
            std::process::Command::new("curl")
                .args(["--silent", "--write-out", "\n%{http_code}", "--header"])
                .args([header.as_str(), url.as_str()])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(String::from_utf8(bearer.stdout).unwrap().ends_with("\n200"));

    // Any other path under /v1/ is a JSON 404; the document itself is served.
    let answer = http_json("GET", &format!("{events}/v1/nothing"), Some(admin), None).await;
    assert_eq!(answer.status, 404);
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap()
            .contains("/openapi.json")
    );
    for base in [&identity, &events] {
        let doc = http_json("GET", &format!("{base}/openapi.json"), None, None).await;
        assert_eq!(doc.body, *OPENAPI);
    }
}

/// The copy of the examples is the documentation's, where the documents are at hand (beside
/// the repository, as in development; a clone elsewhere skips this).
#[test]
fn the_examples_are_the_documentation_s() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/seeds");
    let Ok(entries) = std::fs::read_dir(&seeds) else {
        eprintln!("{} not found; not compared", seeds.display());
        return;
    };
    let mut documents: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
    documents.sort();
    let mut found = Vec::new();
    for document in documents {
        let text = std::fs::read_to_string(&document).unwrap();
        let name = document.file_name().unwrap().to_string_lossy().into_owned();
        for block in text.split("```bash").skip(1) {
            let body = block.split_once('\n').unwrap().1;
            let code = body.split("```").next().unwrap().trim_end();
            found.push((name.clone(), code.to_owned()));
        }
    }
    assert_eq!(found, seed_examples());
}

stories!(
    the_documentation_s_curl_examples_answer_as_documented,
    http_and_grpc_answer_alike,
    http_framing_is_refused_with_clear_errors,
);
