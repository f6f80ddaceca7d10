// FakeKmsServer: an in-process kmsd stand-in for client and kmsctl tests.
//
// A KeyManagementService and an AuditService on 127.0.0.1 (a free port), each
// answering every RPC from its own script: canned responses (a queue per
// method; the last one repeats), or a canned error with an optional `kms-error-type` trailer. It counts calls
// and keeps each request, so tests can check what reached the "daemon" and
// that a usage error reached nothing. A handler (SetHandler) answers by the
// request instead, where a script is not enough. Hold() makes calls wait, to let a
// client's deadline pass without sleeping.
//
// Also ClosedPort: a loopback port where nothing listens.
//
// Thread-safe: gRPC runs the handlers on its own threads.
#ifndef KMS_TESTS_CLIENT_FAKE_KMS_SERVER_H_
#define KMS_TESTS_CLIENT_FAKE_KMS_SERVER_H_

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "kms/v1/kms.grpc.pb.h"

namespace kms::testing {

struct CannedError {
  grpc::StatusCode code;
  std::string message;
  std::string error_type;  // sent as the kms-error-type trailer; empty: no trailer
};

// The script shared by the fake services: `GrpcService` is the generated
// service base class, whose RPCs the final class overrides with Handle().
template <typename GrpcService>
class FakeService : public GrpcService {
 public:
  ~FakeService() override { Release(); }

  // Calls of `method` ("DescribeKey", ...) answer with the responses added,
  // in order; the last one repeats. Without any, an empty response.
  void AddResponse(const std::string& method, const google::protobuf::Message& response) {
    absl::MutexLock lock(&mu_);
    responses_[method].push_back(response.SerializeAsString());
  }

  // Calls of `method` fail with `error` (checked before responses).
  void SetError(const std::string& method, CannedError error) {
    absl::MutexLock lock(&mu_);
    errors_[method] = std::move(error);
  }

  // Calls of `method` are answered by `handler` (after a SetError error, before
  // canned responses): it sees the request and fills the response, or returns
  // an error. For answers that depend on the request. Runs under the fake's
  // lock: it must not call back into the fake.
  using Handler = std::function<std::optional<CannedError>(const google::protobuf::Message& request,
                                                           google::protobuf::Message& response)>;
  void SetHandler(const std::string& method, Handler handler) {
    absl::MutexLock lock(&mu_);
    handlers_[method] = std::move(handler);
  }

  // Calls wait until Release() (at most a minute, so a broken test ends).
  void Hold() {
    absl::MutexLock lock(&mu_);
    holding_ = true;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    holding_ = false;
  }

  int calls(const std::string& method) const {
    absl::MutexLock lock(&mu_);
    auto it = requests_.find(method);
    return it == requests_.end() ? 0 : static_cast<int>(it->second.size());
  }

  int total_calls() const {
    absl::MutexLock lock(&mu_);
    int total = 0;
    for (const auto& [method, requests] : requests_) total += static_cast<int>(requests.size());
    return total;
  }

  // The requests `method` received, oldest first.
  template <typename Request>
  std::vector<Request> requests(const std::string& method) const {
    absl::MutexLock lock(&mu_);
    std::vector<Request> out;
    auto it = requests_.find(method);
    if (it == requests_.end()) return out;
    for (const std::string& bytes : it->second) {
      out.emplace_back();
      out.back().ParseFromString(bytes);
    }
    return out;
  }

  // The last request `method` received; a test failure if there was none.
  template <typename Request>
  Request last_request(const std::string& method) const {
    std::vector<Request> all = requests<Request>(method);
    if (all.empty()) {
      ADD_FAILURE() << "no " << method << " request arrived";
      return Request();
    }
    return all.back();
  }

 protected:
  grpc::Status Handle(const std::string& method, grpc::ServerContext& context,
                      const google::protobuf::Message& request,
                      google::protobuf::Message& response) {
    absl::MutexLock lock(&mu_);
    requests_[method].push_back(request.SerializeAsString());
    mu_.AwaitWithTimeout(absl::Condition(this, &FakeService::NotHolding), absl::Minutes(1));
    if (auto it = errors_.find(method); it != errors_.end()) {
      if (!it->second.error_type.empty()) {
        context.AddTrailingMetadata("kms-error-type", it->second.error_type);
      }
      return grpc::Status(it->second.code, it->second.message);
    }
    if (auto it = handlers_.find(method); it != handlers_.end()) {
      std::optional<CannedError> error = it->second(request, response);
      if (!error.has_value()) return grpc::Status::OK;
      if (!error->error_type.empty()) {
        context.AddTrailingMetadata("kms-error-type", error->error_type);
      }
      return grpc::Status(error->code, error->message);
    }
    if (auto it = responses_.find(method); it != responses_.end() && !it->second.empty()) {
      response.ParseFromString(it->second.front());
      if (it->second.size() > 1) it->second.pop_front();
    }
    return grpc::Status::OK;
  }

 private:
  bool NotHolding() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !holding_; }

  mutable absl::Mutex mu_;
  std::map<std::string, std::vector<std::string>> requests_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::deque<std::string>> responses_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, CannedError> errors_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Handler> handlers_ ABSL_GUARDED_BY(mu_);
  bool holding_ ABSL_GUARDED_BY(mu_) = false;
};

#define KMS_FAKE_RPC(Name)                                                          \
  grpc::Status Name(grpc::ServerContext* context, const v1::Name##Request* request, \
                    v1::Name##Response* response) override {                        \
    return Handle(#Name, *context, *request, *response);                            \
  }

class FakeKmsService final : public FakeService<v1::KeyManagementService::Service> {
 public:
  KMS_FAKE_RPC(CreateKey)
  KMS_FAKE_RPC(DescribeKey)
  KMS_FAKE_RPC(ListKeys)
  KMS_FAKE_RPC(EnableKey)
  KMS_FAKE_RPC(DisableKey)
  KMS_FAKE_RPC(UpdateKeyDescription)
  KMS_FAKE_RPC(ScheduleKeyDeletion)
  KMS_FAKE_RPC(CancelKeyDeletion)
  KMS_FAKE_RPC(CreateAlias)
  KMS_FAKE_RPC(UpdateAlias)
  KMS_FAKE_RPC(DeleteAlias)
  KMS_FAKE_RPC(ListAliases)
  KMS_FAKE_RPC(TagResource)
  KMS_FAKE_RPC(UntagResource)
  KMS_FAKE_RPC(ListResourceTags)
  KMS_FAKE_RPC(EnableKeyRotation)
  KMS_FAKE_RPC(DisableKeyRotation)
  KMS_FAKE_RPC(GetKeyRotationStatus)
  KMS_FAKE_RPC(RotateKeyOnDemand)
  KMS_FAKE_RPC(ListKeyRotations)
  KMS_FAKE_RPC(GetRotationComplianceReport)
  KMS_FAKE_RPC(GetParametersForImport)
  KMS_FAKE_RPC(ImportKeyMaterial)
  KMS_FAKE_RPC(DeleteImportedKeyMaterial)
  KMS_FAKE_RPC(Encrypt)
  KMS_FAKE_RPC(Decrypt)
  KMS_FAKE_RPC(ReEncrypt)
  KMS_FAKE_RPC(GenerateDataKey)
  KMS_FAKE_RPC(GenerateDataKeyWithoutPlaintext)
  KMS_FAKE_RPC(GenerateRandom)
  KMS_FAKE_RPC(PutKeyPolicy)
  KMS_FAKE_RPC(GetKeyPolicy)
  KMS_FAKE_RPC(CreateGrant)
  KMS_FAKE_RPC(ListGrants)
  KMS_FAKE_RPC(RetireGrant)
  KMS_FAKE_RPC(RevokeGrant)
};

// The AuditService: the same script, by method name ("QueryAuditLog", ...).
class FakeAuditService final : public FakeService<v1::AuditService::Service> {
 public:
  KMS_FAKE_RPC(QueryAuditLog)
  KMS_FAKE_RPC(ExportAuditLog)
  KMS_FAKE_RPC(GetAuditPublicKey)
  KMS_FAKE_RPC(GetKeyInventoryReport)
};
#undef KMS_FAKE_RPC

class FakeKmsServer {
 public:
  FakeKmsServer() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    builder.RegisterService(&audit_service_);
    server_ = builder.BuildAndStart();
    EXPECT_NE(server_, nullptr);
    EXPECT_GT(port_, 0);
  }
  ~FakeKmsServer() {
    service_.Release();
    audit_service_.Release();
    server_->Shutdown();
  }

  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }
  FakeKmsService& service() { return service_; }
  FakeAuditService& audit_service() { return audit_service_; }

 private:
  FakeKmsService service_;
  FakeAuditService audit_service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

// A loopback port that refuses connections: bound but not listening, so no
// other process can take it while this object lives.
class ClosedPort {
 public:
  ClosedPort() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd_, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    socklen_t length = sizeof(address);
    EXPECT_EQ(getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length), 0);
    port_ = ntohs(address.sin_port);
  }
  ~ClosedPort() { close(fd_); }
  ClosedPort(const ClosedPort&) = delete;
  ClosedPort& operator=(const ClosedPort&) = delete;

  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace kms::testing

#endif  // KMS_TESTS_CLIENT_FAKE_KMS_SERVER_H_
