//! Health, reflection, and the WatchLedger stream (which must not hold up shutdown).

use std::time::Duration;

use futures::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use upline_api::pb;

use crate::harness::*;

async fn next(stream: &mut tonic::Streaming<pb::LedgerEntry>) -> pb::LedgerEntry {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an entry within 10 s")
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn health_and_reflection_need_no_token() {
    let server = Server::start().await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "upline.v1.CommandService", "upline.v1.QueryService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let ask = |message| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    };
    let requests = futures::stream::iter(vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "upline.v1.CommandService".into(),
        )),
    ]);
    let mut answers = reflection
        .server_reflection_info(requests)
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("a list of services");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "upline.v1.CommandService",
            "upline.v1.QueryService",
        ]
    );
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("the file of CommandService");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn watch_ledger_streams_new_postings_and_ends_on_shutdown() {
    let server = Server::start().await;
    let mut commands = server.operator().await;
    seed(&mut commands).await;
    commands
        .submit_order(order("5001", "2", None))
        .await
        .unwrap();
    server.wait_for_postings(3).await;

    let mut queries = server.queries(Some(DASHBOARD)).await;
    // From now on: the first order's postings are not repeated.
    let mut live = queries
        .watch_ledger(pb::WatchLedgerRequest::default())
        .await
        .unwrap()
        .into_inner();
    // From the beginning, one distributor only.
    let mut history = queries
        .watch_ledger(pb::WatchLedgerRequest {
            distributor_id: "11043".into(),
            after_position: Some(0),
        })
        .await
        .unwrap()
        .into_inner();

    commands
        .submit_order(order("5002", "1", None))
        .await
        .unwrap();
    let mut entries = Vec::new();
    for _ in 0..3 {
        entries.push(next(&mut live).await);
    }
    for e in &entries {
        assert_eq!(e.order_stream, stream("5002"));
        assert_eq!(e.kind, pb::LedgerEntryKind::Earned as i32);
    }
    let mut credited: Vec<(String, String)> = entries
        .iter()
        .map(|e| (e.distributor_id.clone(), amount(&e.amount)))
        .collect();
    credited.sort();
    assert_eq!(
        credited,
        [
            ("10002".to_string(), "0.20 USD".to_string()),
            ("10090".to_string(), "0.59 USD".to_string()),
            ("11043".to_string(), "1.98 USD".to_string()),
        ]
    );
    let first = next(&mut history).await;
    let second = next(&mut history).await;
    assert_eq!(
        (first.order_stream.as_str(), amount(&first.amount).as_str()),
        (stream("5001").as_str(), "3.96 USD")
    );
    assert_eq!(second.order_stream, stream("5002"));
    assert_eq!(first.debit_account, "commission_expense");
    assert_eq!(first.credit_account, "payable:11043");
    assert!(second.position > first.position);

    // Streams still open: the server stops anyway (within `stop`'s 5 s), and they end.
    server.stop().await;
    let end = tokio::time::timeout(Duration::from_secs(5), live.next())
        .await
        .expect("the stream ends");
    assert!(end.is_none() || end.unwrap().is_err());
}

#[test]
fn configuration_is_validated_and_tokens_never_printed() {
    use upline_api::ApiConfig;
    let config: ApiConfig = toml::from_str(
        r#"
        [[tokens]]
        name = "ops"
        token = "0123456789abcdef0123"
        role = "operator"
        "#,
    )
    .unwrap();
    config.validate().unwrap();
    assert_eq!(config.listen, "127.0.0.1:50051".parse().unwrap());
    assert!(!format!("{config:?}").contains("0123456789abcdef"));

    let error = |text: &str| {
        toml::from_str::<ApiConfig>(text)
            .unwrap()
            .validate()
            .unwrap_err()
            .field
    };
    assert_eq!(error(""), "tokens");
    assert_eq!(
        error("[[tokens]]\nname = \"a\"\ntoken = \"short\"\nrole = \"auditor\""),
        "tokens[0].token"
    );
    assert_eq!(
        error(
            "[[tokens]]\nname = \"a\"\ntoken = \"0123456789abcdef0\"\nrole = \"auditor\"\n\
             [[tokens]]\nname = \"a\"\ntoken = \"0123456789abcdef1\"\nrole = \"dashboard\""
        ),
        "tokens[1].name"
    );
    assert!(toml::from_str::<ApiConfig>(
        "[[tokens]]\nname = \"a\"\ntoken = \"0123456789abcdef0\"\nrole = \"admin\""
    )
    .is_err());
}
