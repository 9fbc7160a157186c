"""DynamoDB Local, create_tables and LocalStack from inline templates (no dependency on template.yaml)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import httpx

from local_stack.dynamodb_local import DynamoDBLocal, create_tables
from local_stack.stack import LocalStack
from local_stack.template import loads_template

TEMPLATE = """
Resources:
  {table}:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${{AWS::StackName}}-keys"
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {{AttributeName: pk, AttributeType: S}}
        - {{AttributeName: keyHash, AttributeType: S}}
      KeySchema:
        - {{AttributeName: pk, KeyType: HASH}}
      GlobalSecondaryIndexes:
        - IndexName: byHash
          KeySchema: [{{AttributeName: keyHash, KeyType: HASH}}]
          Projection: {{ProjectionType: KEYS_ONLY}}
      TimeToLiveSpecification: {{AttributeName: expiresAt, Enabled: true}}
      PointInTimeRecoverySpecification: {{PointInTimeRecoveryEnabled: true}}
      DeletionProtectionEnabled: true
"""


def test_create_tables_builds_gsi_and_ttl_idempotently(dynamodb_local: DynamoDBLocal, ddb: Any) -> None:
    # Given a template with one table (unique name: the JVM is shared by the session)
    table = f"Keys{uuid.uuid4().hex[:8]}"
    template = loads_template(TEMPLATE.format(table=table))

    # When its tables are created twice
    names = create_tables(dynamodb_local.endpoint_url, template)
    again = create_tables(dynamodb_local.endpoint_url, template)

    # Then the table exists once, named after its logical id, with its GSI and TTL
    assert names == again == {table: table}
    description = ddb.describe_table(TableName=table)["Table"]
    assert description["TableStatus"] == "ACTIVE"
    assert [index["IndexName"] for index in description["GlobalSecondaryIndexes"]] == ["byHash"]
    assert description["GlobalSecondaryIndexes"][0]["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    ttl = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}
    # And the GSI answers queries
    ddb.put_item(TableName=table, Item={"pk": {"S": "k1"}, "keyHash": {"S": "h1"}})
    found = ddb.query(
        TableName=table,
        IndexName="byHash",
        KeyConditionExpression="keyHash = :h",
        ExpressionAttributeValues={":h": {"S": "h1"}},
    )
    assert found["Items"] == [{"pk": {"S": "k1"}, "keyHash": {"S": "h1"}}]


STACK_TEMPLATE = """
Globals:
  Function:
    Handler: handler.lambda_handler
    Environment:
      Variables:
        NOTES_TABLE: !Ref {table}
Resources:
  {table}:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{{AttributeName: id, AttributeType: S}}]
      KeySchema: [{{AttributeName: id, KeyType: HASH}}]
  PutNoteFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/put_note/
      Events:
        Put: {{Type: Api, Properties: {{Path: "/notes/{{id}}", Method: put}}}}
"""

PUT_NOTE_HANDLER = """
import os

import boto3


def lambda_handler(event, context):
    ddb = boto3.client("dynamodb", endpoint_url=os.environ["DYNAMODB_ENDPOINT_URL"])
    note_id = event["pathParameters"]["id"]
    ddb.put_item(TableName=os.environ["NOTES_TABLE"], Item={"id": {"S": note_id}, "text": {"S": event["body"]}})
    return {"statusCode": 204}
"""


def test_local_stack_serves_handlers_against_dynamodb_local(
    dynamodb_local: DynamoDBLocal, ddb: Any, tmp_path: Path
) -> None:
    # Given a template whose function writes to its table, and the stack started from it
    table = f"Notes{uuid.uuid4().hex[:8]}"
    (tmp_path / "functions" / "put_note").mkdir(parents=True)
    (tmp_path / "functions" / "put_note" / "handler.py").write_text(PUT_NOTE_HANDLER)
    (tmp_path / "template.yaml").write_text(STACK_TEMPLATE.format(table=table))
    stack = LocalStack(tmp_path / "template.yaml", dynamodb=dynamodb_local, create_demo_account=False)
    info = stack.start()
    try:
        # When the API is called over HTTP
        response = httpx.put(f"{info.api_url}/notes/n1", content="hello")
        env_while_running = os.environ.get("NOTES_TABLE")
    finally:
        stack.stop()

    # Then the handler wrote through DynamoDB Local with the environment built from the template
    assert response.status_code == 204
    assert env_while_running == table
    assert ddb.get_item(TableName=table, Key={"id": {"S": "n1"}})["Item"]["text"] == {"S": "hello"}
    # And stopping restored the environment and left the shared DynamoDB Local running
    assert os.environ.get("NOTES_TABLE") is None
    assert ddb.list_tables()["TableNames"]
