// The import token's wire format (import_token.h): what Serialize writes,
// Parse reads back, and every malformed input is the same
// InvalidImportTokenException.
#include "daemon/service/import_token.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "daemon/common/errors.h"
#include "daemon/common/uuid.h"
#include "tests/testing/status_matchers.h"

namespace kms::service {
namespace {

ImportToken Sample() {
  ImportToken token;
  token.wrapping_key_id = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0";
  token.key_id = "1234abcd-12ab-34cd-56ef-1234567890ab";
  token.algorithm = hsm::WrappingAlgorithm::kRsaAesKeyWrapSha256;
  token.expiration_time = absl::FromUnixMicros(1'800'000'000'123'456);
  token.mac_iv = std::string(kImportTokenMacIvSize, '\x11');
  token.mac = std::string(kImportTokenMacSize, '\x22');
  return token;
}

TEST(ImportTokenTest, RoundTripsByteForByteAsDocumented) {
  const ImportToken token = Sample();
  const std::string wire = token.Serialize();
  ASSERT_EQ(wire.size(), kImportTokenSize);
  EXPECT_EQ(wire[0], '\x01');
  EXPECT_EQ(wire.substr(1, 16), *UuidToBytes(token.wrapping_key_id));
  EXPECT_EQ(wire.substr(17, 16), *UuidToBytes(token.key_id));
  EXPECT_EQ(wire[33], '\x04');  // RSA_AES_KEY_WRAP_SHA_256
  EXPECT_EQ(wire.substr(34, 8), std::string("\x00\x06\x65\x17\x28\x9a\x62\x40", 8));
  EXPECT_EQ(wire.substr(42, 12), token.mac_iv);
  EXPECT_EQ(wire.substr(54), token.mac);
  EXPECT_EQ(token.Body(), wire.substr(0, kImportTokenBodySize));
  EXPECT_EQ(token.MacAad(), std::string(kImportTokenMacLabel) + token.Body());

  auto parsed = ImportToken::Parse(wire);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->wrapping_key_id, token.wrapping_key_id);
  EXPECT_EQ(parsed->key_id, token.key_id);
  EXPECT_EQ(parsed->algorithm, token.algorithm);
  EXPECT_EQ(parsed->expiration_time, token.expiration_time);
  EXPECT_EQ(parsed->mac_iv, token.mac_iv);
  EXPECT_EQ(parsed->mac, token.mac);
}

TEST(ImportTokenTest, EveryAlgorithmHasItsOwnByte) {
  for (hsm::WrappingAlgorithm algorithm : hsm::kAllWrappingAlgorithms) {
    ImportToken token = Sample();
    token.algorithm = algorithm;
    auto parsed = ImportToken::Parse(token.Serialize());
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(parsed->algorithm, algorithm);
  }
}

TEST(ImportTokenTest, MalformedTokensAreOneError) {
  const std::string wire = Sample().Serialize();
  std::vector<std::string> bad = {"", wire.substr(1), wire + "x", std::string(70, '\0')};
  for (char version : {'\x00', '\x02', '\xff'}) {
    bad.push_back(wire);
    bad.back()[0] = version;
  }
  for (char algorithm : {'\x00', '\x05', '\xff'}) {
    bad.push_back(wire);
    bad.back()[33] = algorithm;
  }
  std::string message;
  for (const std::string& bytes : bad) {
    auto parsed = ImportToken::Parse(bytes);
    EXPECT_ERROR(parsed, kInvalidArgument, "InvalidImportTokenException");
    if (message.empty()) message = std::string(parsed.status().message());
    EXPECT_EQ(parsed.status().message(), message);
  }
}

}  // namespace
}  // namespace kms::service
