// KmsClient against an in-process fake kmsd (tests/client/fake_kms_server.h):
// responses and requests cross the wire intact, errors keep code, message and
// AWS exception name, data keys come back as SecretBytes, and transport
// failures are told apart from kmsd's own errors.
#include "client/kms_client.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "daemon/common/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_kms_server.h"

namespace kms::client {
namespace {

using ::kms::testing::CannedError;
using ::kms::testing::ClosedPort;
using ::kms::testing::FakeKmsServer;
using ::testing::ElementsAre;
using ::testing::Pair;

constexpr char kKeyId[] = "1234abcd-12ab-34cd-56ef-1234567890ab";
constexpr char kKeyArn[] =
    "arn:kmsd:kms:local:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab";

std::unique_ptr<KmsClient> ConnectOrDie(const std::string& endpoint,
                                        const ClientOptions& options = ClientOptions()) {
  absl::StatusOr<std::unique_ptr<KmsClient>> client = KmsClient::Connect(endpoint, options);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(*client) : nullptr;
}

class KmsClientTest : public ::testing::Test {
 protected:
  FakeKmsServer server_;
  std::unique_ptr<KmsClient> client_ = ConnectOrDie(server_.endpoint());
};

TEST_F(KmsClientTest, ReturnsTheResponseAndSendsTheRequest) {
  v1::DescribeKeyResponse canned;
  canned.mutable_key_metadata()->set_key_id(kKeyId);
  canned.mutable_key_metadata()->set_key_state(v1::DISABLED);
  server_.service().AddResponse("DescribeKey", canned);

  v1::DescribeKeyRequest request;
  request.set_key_id("alias/payments");
  absl::StatusOr<v1::DescribeKeyResponse> response = client_->DescribeKey(request);

  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->key_metadata().key_id(), kKeyId);
  EXPECT_EQ(response->key_metadata().key_state(), v1::DISABLED);
  EXPECT_EQ(server_.service().last_request<v1::DescribeKeyRequest>("DescribeKey").key_id(),
            "alias/payments");
}

TEST_F(KmsClientTest, EachMethodCallsItsOwnRpc) {
  v1::EnableKeyRequest enable;
  enable.set_key_id(kKeyId);
  ASSERT_TRUE(client_->EnableKey(enable).ok());
  v1::ReEncryptRequest re_encrypt;
  re_encrypt.set_destination_key_id(kKeyId);
  ASSERT_TRUE(client_->ReEncrypt(re_encrypt).ok());
  v1::GenerateRandomRequest random;
  random.set_number_of_bytes(16);
  ASSERT_TRUE(client_->GenerateRandom(random).ok());

  EXPECT_EQ(server_.service().calls("EnableKey"), 1);
  EXPECT_EQ(server_.service().calls("ReEncrypt"), 1);
  EXPECT_EQ(server_.service().calls("GenerateRandom"), 1);
  EXPECT_EQ(server_.service().total_calls(), 3);
}

TEST_F(KmsClientTest, RotationMethodsCallTheirOwnRpcsWithTheirRequests) {
  v1::EnableKeyRotationRequest enable;
  enable.set_key_id(kKeyId);
  enable.set_rotation_period_in_days(90);
  ASSERT_TRUE(client_->EnableKeyRotation(enable).ok());
  v1::DisableKeyRotationRequest disable;
  disable.set_key_id("alias/payments");
  ASSERT_TRUE(client_->DisableKeyRotation(disable).ok());
  v1::GetKeyRotationStatusRequest status;
  status.set_key_id(kKeyArn);
  ASSERT_TRUE(client_->GetKeyRotationStatus(status).ok());
  v1::RotateKeyOnDemandRequest rotate;
  rotate.set_key_id(kKeyId);
  ASSERT_TRUE(client_->RotateKeyOnDemand(rotate).ok());
  v1::ListKeyRotationsRequest list;
  list.set_key_id(kKeyId);
  list.set_limit(2);
  list.set_marker("version-0002");
  ASSERT_TRUE(client_->ListKeyRotations(list).ok());
  v1::GetRotationComplianceReportRequest report;
  report.set_max_age_in_days(30);
  report.set_include_compliant(true);
  ASSERT_TRUE(client_->GetRotationComplianceReport(report).ok());

  const ::kms::testing::FakeKmsService& service = server_.service();
  EXPECT_EQ(service.total_calls(), 6);
  v1::EnableKeyRotationRequest sent_enable =
      service.last_request<v1::EnableKeyRotationRequest>("EnableKeyRotation");
  EXPECT_EQ(sent_enable.key_id(), kKeyId);
  ASSERT_TRUE(sent_enable.has_rotation_period_in_days());
  EXPECT_EQ(sent_enable.rotation_period_in_days(), 90);
  EXPECT_EQ(service.last_request<v1::DisableKeyRotationRequest>("DisableKeyRotation").key_id(),
            "alias/payments");
  EXPECT_EQ(service.last_request<v1::GetKeyRotationStatusRequest>("GetKeyRotationStatus").key_id(),
            kKeyArn);
  EXPECT_EQ(service.last_request<v1::RotateKeyOnDemandRequest>("RotateKeyOnDemand").key_id(),
            kKeyId);
  v1::ListKeyRotationsRequest sent_list =
      service.last_request<v1::ListKeyRotationsRequest>("ListKeyRotations");
  EXPECT_EQ(sent_list.key_id(), kKeyId);
  EXPECT_EQ(sent_list.limit(), 2);
  EXPECT_EQ(sent_list.marker(), "version-0002");
  v1::GetRotationComplianceReportRequest sent_report =
      service.last_request<v1::GetRotationComplianceReportRequest>("GetRotationComplianceReport");
  EXPECT_EQ(sent_report.max_age_in_days(), 30);
  EXPECT_TRUE(sent_report.include_compliant());
}

TEST_F(KmsClientTest, ImportMethodsCallTheirOwnRpcsAndReturnTheirResponses) {
  v1::GetParametersForImportResponse parameters;
  parameters.set_key_id(kKeyArn);
  parameters.set_import_token(std::string("tok\0en", 6));
  parameters.set_public_key("DER");
  parameters.mutable_parameters_valid_to()->set_seconds(1800086400);
  server_.service().AddResponse("GetParametersForImport", parameters);
  v1::ImportKeyMaterialResponse imported;
  imported.set_key_id(kKeyArn);
  imported.set_key_material_id("version-0001");
  imported.set_key_check_value("DC95C0");
  server_.service().AddResponse("ImportKeyMaterial", imported);

  v1::GetParametersForImportRequest get;
  get.set_key_id(kKeyId);
  get.set_wrapping_algorithm(v1::RSA_AES_KEY_WRAP_SHA_256);
  get.set_wrapping_key_spec(v1::RSA_4096);
  absl::StatusOr<v1::GetParametersForImportResponse> got = client_->GetParametersForImport(get);
  v1::ImportKeyMaterialRequest import;
  import.set_key_id(kKeyArn);
  import.set_import_token(std::string("tok\0en", 6));
  import.set_encrypted_key_material("wrapped");
  import.set_expected_key_check_value("DC95C0");
  import.set_import_type(v1::NEW_KEY_MATERIAL);
  absl::StatusOr<v1::ImportKeyMaterialResponse> import_response =
      client_->ImportKeyMaterial(import);
  v1::DeleteImportedKeyMaterialRequest remove;
  remove.set_key_id("alias/byok");
  absl::StatusOr<v1::DeleteImportedKeyMaterialResponse> removed =
      client_->DeleteImportedKeyMaterial(remove);

  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->import_token(), std::string("tok\0en", 6));
  EXPECT_EQ(got->public_key(), "DER");
  EXPECT_EQ(got->parameters_valid_to().seconds(), 1800086400);
  ASSERT_TRUE(import_response.ok()) << import_response.status();
  EXPECT_EQ(import_response->key_material_id(), "version-0001");
  EXPECT_EQ(import_response->key_check_value(), "DC95C0");
  ASSERT_TRUE(removed.ok()) << removed.status();
  const ::kms::testing::FakeKmsService& service = server_.service();
  EXPECT_EQ(service.total_calls(), 3);
  v1::GetParametersForImportRequest sent_get =
      service.last_request<v1::GetParametersForImportRequest>("GetParametersForImport");
  EXPECT_EQ(sent_get.wrapping_algorithm(), v1::RSA_AES_KEY_WRAP_SHA_256);
  EXPECT_EQ(sent_get.wrapping_key_spec(), v1::RSA_4096);
  v1::ImportKeyMaterialRequest sent_import =
      service.last_request<v1::ImportKeyMaterialRequest>("ImportKeyMaterial");
  EXPECT_EQ(sent_import.encrypted_key_material(), "wrapped");
  EXPECT_EQ(sent_import.expected_key_check_value(), "DC95C0");
  EXPECT_EQ(sent_import.import_type(), v1::NEW_KEY_MATERIAL);
  EXPECT_EQ(service.last_request<v1::DeleteImportedKeyMaterialRequest>("DeleteImportedKeyMaterial")
                .key_id(),
            "alias/byok");
}

TEST_F(KmsClientTest, ImportErrorsKeepTheirExceptionName) {
  server_.service().SetError(
      "ImportKeyMaterial",
      {grpc::StatusCode::INVALID_ARGUMENT, "import token expired", "ExpiredImportTokenException"});

  absl::StatusOr<v1::ImportKeyMaterialResponse> response =
      client_->ImportKeyMaterial(v1::ImportKeyMaterialRequest());

  EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorTypeOf(response.status()), "ExpiredImportTokenException");
}

TEST_F(KmsClientTest, AccessMethodsCallTheirOwnRpcsAndReturnTheirResponses) {
  const std::string policy = "{\n  \"Version\": \"2012-10-17\"  }";
  v1::GetKeyPolicyResponse stored;
  stored.set_policy(policy);
  server_.service().AddResponse("GetKeyPolicy", stored);
  v1::CreateGrantResponse granted;
  granted.set_grant_id("grant-1");
  granted.set_grant_token("token-1");
  server_.service().AddResponse("CreateGrant", granted);
  v1::ListGrantsResponse listed;
  listed.add_grants()->set_grant_id("grant-1");
  listed.mutable_grants(0)->add_operations(v1::DECRYPT);
  server_.service().AddResponse("ListGrants", listed);

  v1::PutKeyPolicyRequest put;
  put.set_key_id(kKeyId);
  put.set_policy(policy);
  put.set_bypass_policy_lockout_safety_check(true);
  ASSERT_TRUE(client_->PutKeyPolicy(put).ok());
  v1::GetKeyPolicyRequest get;
  get.set_key_id("alias/payments");
  absl::StatusOr<v1::GetKeyPolicyResponse> got = client_->GetKeyPolicy(get);
  v1::CreateGrantRequest create;
  create.set_key_id(kKeyId);
  create.set_grantee_principal("svc-payments");
  create.add_operations(v1::GENERATE_DATA_KEY);
  (*create.mutable_constraints()->mutable_encryption_context_equals())["app"] = "pay";
  absl::StatusOr<v1::CreateGrantResponse> created = client_->CreateGrant(create);
  v1::ListGrantsRequest list;
  list.set_key_id(kKeyId);
  list.set_marker("m1");
  absl::StatusOr<v1::ListGrantsResponse> grants = client_->ListGrants(list);
  v1::RetireGrantRequest retire;
  retire.set_grant_token("token-1");
  ASSERT_TRUE(client_->RetireGrant(retire).ok());
  v1::RevokeGrantRequest revoke;
  revoke.set_key_id(kKeyId);
  revoke.set_grant_id("grant-2");
  ASSERT_TRUE(client_->RevokeGrant(revoke).ok());

  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->policy(), policy);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->grant_id(), "grant-1");
  EXPECT_EQ(created->grant_token(), "token-1");
  ASSERT_TRUE(grants.ok()) << grants.status();
  ASSERT_EQ(grants->grants_size(), 1);
  EXPECT_THAT(grants->grants(0).operations(), ElementsAre(v1::DECRYPT));
  const ::kms::testing::FakeKmsService& service = server_.service();
  EXPECT_EQ(service.total_calls(), 6);
  v1::PutKeyPolicyRequest sent_put = service.last_request<v1::PutKeyPolicyRequest>("PutKeyPolicy");
  EXPECT_EQ(sent_put.policy(), policy);
  EXPECT_TRUE(sent_put.bypass_policy_lockout_safety_check());
  EXPECT_EQ(service.last_request<v1::GetKeyPolicyRequest>("GetKeyPolicy").key_id(),
            "alias/payments");
  v1::CreateGrantRequest sent_create = service.last_request<v1::CreateGrantRequest>("CreateGrant");
  EXPECT_THAT(sent_create.operations(), ElementsAre(v1::GENERATE_DATA_KEY));
  EXPECT_THAT(sent_create.constraints().encryption_context_equals(),
              ElementsAre(Pair("app", "pay")));
  EXPECT_EQ(service.last_request<v1::ListGrantsRequest>("ListGrants").marker(), "m1");
  EXPECT_EQ(service.last_request<v1::RetireGrantRequest>("RetireGrant").grant_token(), "token-1");
  EXPECT_EQ(service.last_request<v1::RevokeGrantRequest>("RevokeGrant").grant_id(), "grant-2");
}

TEST_F(KmsClientTest, AuditMethodsCallTheAuditService) {
  v1::QueryAuditLogResponse queried;
  queried.add_records()->set_sequence(7);
  queried.mutable_records(0)->set_line("{\"seq\":7}");
  queried.set_next_sequence(7);
  queried.set_truncated(true);
  server_.audit_service().AddResponse("QueryAuditLog", queried);
  v1::ExportAuditLogResponse exported;
  exported.add_lines("{\"seq\":1}");
  server_.audit_service().AddResponse("ExportAuditLog", exported);
  v1::GetAuditPublicKeyResponse public_key;
  public_key.set_public_key_pem("-----BEGIN PUBLIC KEY-----\n");
  public_key.set_key_fingerprint("sha256:ab");
  server_.audit_service().AddResponse("GetAuditPublicKey", public_key);
  v1::GetKeyInventoryReportResponse inventory;
  inventory.add_keys()->set_key_id(kKeyId);
  server_.audit_service().AddResponse("GetKeyInventoryReport", inventory);

  v1::QueryAuditLogRequest query;
  query.set_principal("alice");
  query.set_outcome(v1::DENIED);
  query.set_after_sequence(6);
  absl::StatusOr<v1::QueryAuditLogResponse> records = client_->QueryAuditLog(query);
  v1::ExportAuditLogRequest export_request;
  export_request.set_after_sequence(0);
  absl::StatusOr<v1::ExportAuditLogResponse> lines = client_->ExportAuditLog(export_request);
  absl::StatusOr<v1::GetAuditPublicKeyResponse> key =
      client_->GetAuditPublicKey(v1::GetAuditPublicKeyRequest());
  v1::GetKeyInventoryReportRequest report;
  report.set_max_age_in_days(90);
  absl::StatusOr<v1::GetKeyInventoryReportResponse> keys = client_->GetKeyInventoryReport(report);

  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->records(0).line(), "{\"seq\":7}");
  EXPECT_TRUE(records->truncated());
  ASSERT_TRUE(lines.ok()) << lines.status();
  EXPECT_THAT(lines->lines(), ElementsAre("{\"seq\":1}"));
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->key_fingerprint(), "sha256:ab");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->keys(0).key_id(), kKeyId);
  const ::kms::testing::FakeAuditService& audit = server_.audit_service();
  EXPECT_EQ(audit.total_calls(), 4);
  EXPECT_EQ(server_.service().total_calls(), 0);
  v1::QueryAuditLogRequest sent = audit.last_request<v1::QueryAuditLogRequest>("QueryAuditLog");
  EXPECT_EQ(sent.principal(), "alice");
  EXPECT_EQ(sent.outcome(), v1::DENIED);
  EXPECT_EQ(sent.after_sequence(), 6u);
  EXPECT_EQ(
      audit.last_request<v1::GetKeyInventoryReportRequest>("GetKeyInventoryReport").max_age_in_days(),
      90);
}

TEST_F(KmsClientTest, AuditErrorsKeepTheirExceptionName) {
  server_.audit_service().SetError(
      "QueryAuditLog",
      {grpc::StatusCode::PERMISSION_DENIED, "not an auditor", "AccessDeniedException"});

  absl::StatusOr<v1::QueryAuditLogResponse> response =
      client_->QueryAuditLog(v1::QueryAuditLogRequest());

  EXPECT_EQ(response.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrorTypeOf(response.status()), "AccessDeniedException");
  EXPECT_FALSE(IsTransportError(response.status()));
}

TEST_F(KmsClientTest, AuditCallStillUnansweredAtTheTimeoutFailsWithDeadlineExceeded) {
  ClientOptions options;
  options.timeout = absl::Milliseconds(200);
  std::unique_ptr<KmsClient> client = ConnectOrDie(server_.endpoint(), options);
  server_.audit_service().Hold();

  absl::StatusOr<v1::ExportAuditLogResponse> response =
      client->ExportAuditLog(v1::ExportAuditLogRequest());

  server_.audit_service().Release();
  EXPECT_EQ(response.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(IsTransportError(response.status()));
}

TEST_F(KmsClientTest, RotationResponsesCrossTheWireIntact) {
  v1::RotateKeyOnDemandResponse rotated;
  rotated.set_key_id(kKeyArn);
  rotated.set_key_version_id("version-0003");
  server_.service().AddResponse("RotateKeyOnDemand", rotated);
  v1::ListKeyRotationsResponse rotations;
  v1::RotationsListEntry* entry = rotations.add_rotations();
  entry->set_key_id(kKeyId);
  entry->set_key_version_id("version-0003");
  entry->mutable_rotation_date()->set_seconds(1800000000);
  entry->set_rotation_type(v1::ON_DEMAND);
  entry->set_current(true);
  rotations.set_truncated(true);
  rotations.set_next_marker("version-0003");
  server_.service().AddResponse("ListKeyRotations", rotations);
  v1::GetRotationComplianceReportResponse report;
  report.set_max_age_in_days(365);
  report.add_keys()->set_status(v1::OVERDUE);
  server_.service().AddResponse("GetRotationComplianceReport", report);

  absl::StatusOr<v1::RotateKeyOnDemandResponse> rotate_response =
      client_->RotateKeyOnDemand(v1::RotateKeyOnDemandRequest());
  absl::StatusOr<v1::ListKeyRotationsResponse> list_response =
      client_->ListKeyRotations(v1::ListKeyRotationsRequest());
  absl::StatusOr<v1::GetRotationComplianceReportResponse> report_response =
      client_->GetRotationComplianceReport(v1::GetRotationComplianceReportRequest());

  ASSERT_TRUE(rotate_response.ok()) << rotate_response.status();
  EXPECT_EQ(rotate_response->key_version_id(), "version-0003");
  ASSERT_TRUE(list_response.ok()) << list_response.status();
  EXPECT_EQ(list_response->SerializeAsString(), rotations.SerializeAsString());
  ASSERT_TRUE(report_response.ok()) << report_response.status();
  EXPECT_EQ(report_response->SerializeAsString(), report.SerializeAsString());
}

TEST_F(KmsClientTest, RotateKeyOnDemandOverTheLimitIsLimitExceeded) {
  server_.service().SetError(
      "RotateKeyOnDemand",
      {grpc::StatusCode::RESOURCE_EXHAUSTED, "key has had 25 on-demand rotations, the limit is 25",
       "LimitExceededException"});

  absl::StatusOr<v1::RotateKeyOnDemandResponse> response =
      client_->RotateKeyOnDemand(v1::RotateKeyOnDemandRequest());

  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(response.status().message(), "key has had 25 on-demand rotations, the limit is 25");
  EXPECT_EQ(ErrorTypeOf(response.status()), "LimitExceededException");
  EXPECT_FALSE(IsTransportError(response.status()));
}

struct ErrorCase {
  std::string name;
  grpc::StatusCode grpc_code;
  absl::StatusCode code;
  std::string error_type;
};

// Names the case in test listings (ctest shows the parameter).
void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }

class KmsClientErrorTest : public KmsClientTest, public ::testing::WithParamInterface<ErrorCase> {};

TEST_P(KmsClientErrorTest, CodeMessageAndErrorTypeSurviveTheTrip) {
  const ErrorCase& c = GetParam();
  server_.service().SetError("Decrypt", {c.grpc_code, "the message for " + c.name, c.error_type});

  absl::StatusOr<v1::DecryptResponse> response = client_->Decrypt(v1::DecryptRequest());

  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), c.code);
  EXPECT_EQ(response.status().message(), "the message for " + c.name);
  EXPECT_EQ(ErrorTypeOf(response.status()), c.error_type);
  // kmsd's errors are never mistaken for an unreachable kmsd.
  EXPECT_FALSE(IsTransportError(response.status()));
}

INSTANTIATE_TEST_SUITE_P(
    AwsExceptions, KmsClientErrorTest,
    ::testing::Values(ErrorCase{"NotFound", grpc::StatusCode::NOT_FOUND,
                                absl::StatusCode::kNotFound, "NotFoundException"},
                      ErrorCase{"InvalidCiphertext", grpc::StatusCode::INVALID_ARGUMENT,
                                absl::StatusCode::kInvalidArgument, "InvalidCiphertextException"},
                      ErrorCase{"IncorrectKey", grpc::StatusCode::INVALID_ARGUMENT,
                                absl::StatusCode::kInvalidArgument, "IncorrectKeyException"},
                      ErrorCase{"Disabled", grpc::StatusCode::FAILED_PRECONDITION,
                                absl::StatusCode::kFailedPrecondition, "DisabledException"},
                      ErrorCase{"AccessDenied", grpc::StatusCode::PERMISSION_DENIED,
                                absl::StatusCode::kPermissionDenied, "AccessDeniedException"},
                      ErrorCase{"KeyUnavailable", grpc::StatusCode::UNAVAILABLE,
                                absl::StatusCode::kUnavailable, "KeyUnavailableException"},
                      ErrorCase{"DependencyTimeout", grpc::StatusCode::DEADLINE_EXCEEDED,
                                absl::StatusCode::kDeadlineExceeded, "DependencyTimeoutException"}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) { return info.param.name; });

TEST_F(KmsClientTest, ErrorWithoutTrailerGetsTheDefaultTypeForItsCode) {
  server_.service().SetError(
      "DisableKey", {grpc::StatusCode::FAILED_PRECONDITION, "key is pending deletion", ""});

  absl::StatusOr<v1::DisableKeyResponse> response = client_->DisableKey(v1::DisableKeyRequest());

  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(response.status().message(), "key is pending deletion");
  EXPECT_EQ(ErrorTypeOf(response.status()), "KMSInvalidStateException");
  EXPECT_FALSE(response.status().GetPayload(kErrorTypePayloadUrl).has_value());
}

TEST_F(KmsClientTest, DataKeySourceGenerateDataKeyReturnsThePlaintextAsSecretBytes) {
  v1::GenerateDataKeyResponse canned;
  canned.set_plaintext(std::string(32, '\x5a'));
  canned.set_ciphertext_blob("wrapped-key");
  canned.set_key_id(kKeyArn);
  server_.service().AddResponse("GenerateDataKey", canned);
  DataKeySource& source = *client_;

  absl::StatusOr<DataKey> key = source.GenerateDataKey("alias/files", {{"purpose", "backup"}});

  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->plaintext.secret(), std::string(32, '\x5a'));
  EXPECT_EQ(key->ciphertext_blob, "wrapped-key");
  EXPECT_EQ(key->key_arn, kKeyArn);
  v1::GenerateDataKeyRequest sent =
      server_.service().last_request<v1::GenerateDataKeyRequest>("GenerateDataKey");
  EXPECT_EQ(sent.key_id(), "alias/files");
  EXPECT_EQ(sent.key_spec(), v1::AES_256);
  EXPECT_FALSE(sent.has_number_of_bytes());
  EXPECT_THAT(sent.encryption_context(), ElementsAre(Pair("purpose", "backup")));
}

TEST_F(KmsClientTest, DataKeySourceDecryptDataKeyReturnsThePlaintextAsSecretBytes) {
  v1::DecryptResponse canned;
  canned.set_plaintext(std::string(32, '\x17'));
  canned.set_key_id(kKeyArn);
  server_.service().AddResponse("Decrypt", canned);
  DataKeySource& source = *client_;

  absl::StatusOr<SecretBytes> key = source.DecryptDataKey("wrapped-key", {{"a", "b=c"}});

  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->secret(), std::string(32, '\x17'));
  v1::DecryptRequest sent = server_.service().last_request<v1::DecryptRequest>("Decrypt");
  EXPECT_EQ(sent.ciphertext_blob(), "wrapped-key");
  EXPECT_THAT(sent.encryption_context(), ElementsAre(Pair("a", "b=c")));
}

TEST_F(KmsClientTest, DataKeySourceErrorsKeepTheirType) {
  server_.service().SetError(
      "Decrypt", {grpc::StatusCode::INVALID_ARGUMENT, "bad blob", "InvalidCiphertextException"});
  DataKeySource& source = *client_;

  absl::StatusOr<SecretBytes> key = source.DecryptDataKey("wrapped-key", {});

  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorTypeOf(key.status()), "InvalidCiphertextException");
}

TEST_F(KmsClientTest, CallStillUnansweredAtTheTimeoutFailsWithDeadlineExceeded) {
  ClientOptions options;
  options.timeout = absl::Milliseconds(200);
  std::unique_ptr<KmsClient> client = ConnectOrDie(server_.endpoint(), options);
  server_.service().Hold();

  absl::StatusOr<v1::ListKeysResponse> response = client->ListKeys(v1::ListKeysRequest());

  server_.service().Release();
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(IsTransportError(response.status()));
}

TEST(KmsClientConnectTest, UnreachableEndpointFailsWithUnavailable) {
  ClosedPort port;
  std::unique_ptr<KmsClient> client = ConnectOrDie(port.endpoint());

  absl::StatusOr<v1::ListKeysResponse> response = client->ListKeys(v1::ListKeysRequest());

  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(IsTransportError(response.status()));
}

TEST(KmsClientConnectTest, RejectsAnEmptyEndpoint) {
  EXPECT_EQ(KmsClient::Connect("").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KmsClientConnectTest, RejectsANonPositiveTimeout) {
  ClientOptions options;
  options.timeout = absl::ZeroDuration();
  EXPECT_EQ(KmsClient::Connect("127.0.0.1:7700", options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(KmsClientTest, ConcurrentCallsFromManyThreadsAllSucceed) {
  constexpr int kThreads = 8;
  constexpr int kCallsPerThread = 20;
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t, &failures] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        v1::DescribeKeyRequest request;
        request.set_key_id(kKeyId);
        if (!client_->DescribeKey(request).ok()) ++failures[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_THAT(failures, ::testing::Each(0));
  EXPECT_EQ(server_.service().calls("DescribeKey"), kThreads * kCallsPerThread);
}

}  // namespace
}  // namespace kms::client
