"""local_stack.template: CloudFormation tags, tables, API routes and environment read from a template."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_stack.template import (
    ApiRoute,
    api_routes,
    function_environment,
    gateway_responses,
    load_template,
    loads_template,
    runs_under_web_adapter,
    table_definitions,
)

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
Globals:
  Function:
    Runtime: python3.12
    Handler: handler.lambda_handler
    Environment:
      Variables:
        KEYS_TABLE: !Ref KeysTable
        LOG_LEVEL: INFO
        STAGE: !Ref Stage
        BUCKET: !Sub "${AWS::StackName}-bucket"
Resources:
  KeysTable:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${AWS::StackName}-keys"
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: keyHash, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
      GlobalSecondaryIndexes:
        - IndexName: byHash
          KeySchema:
            - {AttributeName: keyHash, KeyType: HASH}
          Projection: {ProjectionType: ALL}
      TimeToLiveSpecification:
        AttributeName: expiresAt
        Enabled: true
      PointInTimeRecoverySpecification: {PointInTimeRecoveryEnabled: true}
      DeletionProtectionEnabled: true
      SSESpecification: {SSEEnabled: true}
      Tags: [{Key: app, Value: demo}]
  UsageTable:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: sk, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
        - {AttributeName: sk, KeyType: RANGE}
  KeysFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/keys/
      Environment:
        Variables:
          LOG_LEVEL: DEBUG
          USAGE_TABLE: !Ref UsageTable
          TABLE_ARN: !GetAtt KeysTable.Arn
      Events:
        List:
          Type: Api
          Properties: {Path: /api/keys, Method: get}
        Revoke:
          Type: Api
          Properties: {Path: "/api/keys/{id}", Method: delete}
        Nightly:
          Type: Schedule
          Properties: {Schedule: rate(1 day)}
  WorkerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/worker/
      Handler: app.main
Outputs:
  Api:
    Value: !Sub "https://${ServerlessRestApi}.execute-api.${AWS::Region}.amazonaws.com/Prod"
"""


def test_short_tags_load_as_long_form_intrinsics() -> None:
    # Given a template using scalar, sequence and mapping short tags
    text = """
A: !Ref Bucket
B: !GetAtt Table.StreamArn
C: !GetAtt [Table, Arn]
D: !Sub "${AWS::Region}-x"
E: !If [IsProd, !Ref Prod, !Ref AWS::NoValue]
F: !Join ["-", [!Ref A, b]]
G: !Condition IsProd
H: !Select [0, !GetAZs ""]
I: !Sub
  - "${X}"
  - {X: !ImportValue other}
J: !Base64 {Foo: bar}
"""
    # When it is loaded
    data = loads_template(text)

    # Then every tag becomes the JSON form CloudFormation uses
    assert data["A"] == {"Ref": "Bucket"}
    assert data["B"] == {"Fn::GetAtt": ["Table", "StreamArn"]}
    assert data["C"] == {"Fn::GetAtt": ["Table", "Arn"]}
    assert data["D"] == {"Fn::Sub": "${AWS::Region}-x"}
    assert data["E"] == {"Fn::If": ["IsProd", {"Ref": "Prod"}, {"Ref": "AWS::NoValue"}]}
    assert data["F"] == {"Fn::Join": ["-", [{"Ref": "A"}, "b"]]}
    assert data["G"] == {"Condition": "IsProd"}
    assert data["H"] == {"Fn::Select": [0, {"Fn::GetAZs": ""}]}
    assert data["I"] == {"Fn::Sub": ["${X}", {"X": {"Fn::ImportValue": "other"}}]}
    assert data["J"] == {"Fn::Base64": {"Foo": "bar"}}


def test_load_template_reads_a_file(tmp_path: Path) -> None:
    # Given the template on disk
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE, encoding="utf-8")

    # When it is loaded by path
    template = load_template(path)

    # Then resources and tags are parsed
    assert template["Resources"]["KeysTable"]["Properties"]["TableName"] == {"Fn::Sub": "${AWS::StackName}-keys"}


def test_loader_stays_safe() -> None:
    # Given a document with a Python object tag (allowed only by unsafe loaders)
    # When / Then it is rejected rather than constructed
    with pytest.raises(Exception, match="python/object"):
        loads_template("a: !!python/object/apply:os.system ['true']")


def test_table_definitions_give_create_table_kwargs_and_ttl() -> None:
    # Given the template
    template = loads_template(TEMPLATE)

    # When table definitions are derived
    tables = table_definitions(template)

    # Then each table is named after its logical id, on-demand, with its keys, GSI and TTL
    assert set(tables) == {"KeysTable", "UsageTable"}
    keys = tables["KeysTable"]
    assert keys["create"] == {
        "TableName": "KeysTable",
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "keyHash", "AttributeType": "S"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "byHash",
                "KeySchema": [{"AttributeName": "keyHash", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }
    assert keys["ttl_attribute"] == "expiresAt"
    # And a table without TTL or indexes has neither
    usage = tables["UsageTable"]
    assert usage["ttl_attribute"] is None
    assert "GlobalSecondaryIndexes" not in usage["create"]
    assert usage["create"]["KeySchema"][1] == {"AttributeName": "sk", "KeyType": "RANGE"}


def test_table_definitions_disabled_ttl_is_ignored() -> None:
    # Given a table whose TTL specification is disabled
    template = loads_template(
        """
Resources:
  T:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      TimeToLiveSpecification: {AttributeName: ttl, Enabled: false}
"""
    )

    # When / Then no TTL attribute is reported
    assert table_definitions(template)["T"]["ttl_attribute"] is None


def test_api_routes_come_from_api_events_with_globals_fallback() -> None:
    # Given the template
    template = loads_template(TEMPLATE)

    # When routes are derived
    routes = api_routes(template)

    # Then only Api events are routes, with upper-case methods and the global Handler
    assert routes == [
        ApiRoute("GET", "/api/keys", "KeysFunction", "functions/keys/", "handler.lambda_handler"),
        ApiRoute("DELETE", "/api/keys/{id}", "KeysFunction", "functions/keys/", "handler.lambda_handler"),
    ]


def test_function_environment_merges_globals_and_resolves_table_refs() -> None:
    # Given the template and local table names
    template = loads_template(TEMPLATE)
    table_names = {"KeysTable": "KeysTable", "UsageTable": "UsageTable"}

    # When the environment of a function is derived
    env = function_environment(template, "KeysFunction", table_names)

    # Then function values override globals, table refs resolve and other intrinsics are dropped
    assert env == {
        "KEYS_TABLE": "KeysTable",
        "LOG_LEVEL": "DEBUG",
        "USAGE_TABLE": "UsageTable",
    }
    # And a function without its own variables gets the globals
    assert function_environment(template, "WorkerFunction", table_names) == {
        "KEYS_TABLE": "KeysTable",
        "LOG_LEVEL": "INFO",
    }


def test_gateway_responses_merge_globals_and_apis() -> None:
    # Given an implicit-API global response and an explicit API overriding another
    template = loads_template(
        """
Globals:
  Api:
    GatewayResponses:
      THROTTLED: {StatusCode: 429}
      DEFAULT_4XX: {StatusCode: 400}
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties:
      GatewayResponses:
        DEFAULT_4XX: {ResponseTemplates: {application/json: '{}'}}
"""
    )

    # When gateway responses are read
    responses = gateway_responses(template)

    # Then both sources are merged, the API winning
    assert responses == {
        "THROTTLED": {"StatusCode": 429},
        "DEFAULT_4XX": {"ResponseTemplates": {"application/json": "{}"}},
    }


WEB_ADAPTER_TEMPLATE = """
Globals:
  Function:
    Handler: handler.lambda_handler
    Environment:
      Variables:
        LOG_LEVEL: INFO
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties: {StageName: prod}
  ProxyFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/proxy/
      Handler: run.sh
      Environment:
        Variables:
          AWS_LAMBDA_EXEC_WRAPPER: /opt/bootstrap
          AWS_LWA_INVOKE_MODE: response_stream
      Events:
        Chat:
          Type: Api
          Properties:
            RestApiId: !Ref Api
            Path: /v1/chat/completions
            Method: post
            ResponseTransferMode: RESPONSE_STREAM
            TimeoutInMillis: 900000
        Models:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: /v1/models, Method: get}
  SettingsOnlyFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/other/
      Handler: start.sh
      Environment:
        Variables:
          AWS_LWA_PORT: "9000"
  KeysFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/keys/
      Events:
        List: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /api/keys, Method: get}}
"""


def test_web_adapter_functions_are_detected_from_their_environment() -> None:
    # Given functions with the adapter's exec wrapper, with only AWS_LWA_* settings, and a plain one
    template = loads_template(WEB_ADAPTER_TEMPLATE)

    # When / Then the first two run under the Lambda Web Adapter and the plain handler does not
    assert runs_under_web_adapter(template, "ProxyFunction")
    assert runs_under_web_adapter(template, "SettingsOnlyFunction")
    assert not runs_under_web_adapter(template, "KeysFunction")


def test_web_adapter_routes_keep_their_script_and_transfer_mode() -> None:
    # Given the template
    template = loads_template(WEB_ADAPTER_TEMPLATE)

    # When routes are derived
    routes = api_routes(template)

    # Then the adapter function's events are routes flagged as such, streaming where the event says so
    assert routes == [
        ApiRoute("POST", "/v1/chat/completions", "ProxyFunction", "functions/proxy/", "run.sh", True, True),
        ApiRoute("GET", "/v1/models", "ProxyFunction", "functions/proxy/", "run.sh", True, False),
        ApiRoute("GET", "/api/keys", "KeysFunction", "functions/keys/", "handler.lambda_handler"),
    ]


def test_repository_template_serves_the_proxy_under_the_web_adapter() -> None:
    # Given the repository's template
    template = load_template(Path(__file__).resolve().parents[3] / "template.yaml")

    # When its routes are derived
    proxy = {(r.method, r.path): r for r in api_routes(template) if r.function_id == "ProxyFunction"}
    others = [r for r in api_routes(template) if r.function_id != "ProxyFunction"]

    # Then the proxy's routes stream through the adapter, and every management route is a plain handler
    assert set(proxy) == {
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/{model+}"),
        ("GET", "/v1/key"),
    } | {
        ("OPTIONS", path)
        for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/models", "/v1/models/{model+}", "/v1/key")
    }
    assert all(r.web_adapter and r.streaming and r.handler == "run.sh" for r in proxy.values())
    assert others and not any(r.web_adapter or r.streaming for r in others)
