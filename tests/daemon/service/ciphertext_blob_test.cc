#include "daemon/service/ciphertext_blob.h"

#include <gtest/gtest.h>

#include "daemon/common/errors.h"
#include "daemon/common/uuid.h"

namespace kms::service {
namespace {

CiphertextBlob SampleBlob(size_t plaintext_size = 32) {
  CiphertextBlob blob;
  blob.key_id = "11111111-2222-4333-8444-555555555555";
  blob.key_version_id = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
  blob.iv = std::string(kBlobIvSize, '\x07');
  blob.ciphertext = std::string(plaintext_size + kBlobTagSize, '\x5a');
  return blob;
}

TEST(CiphertextBlobTest, SerializeThenParseGivesTheSameFields) {
  const CiphertextBlob blob = SampleBlob();
  absl::StatusOr<CiphertextBlob> parsed = CiphertextBlob::Parse(blob.Serialize());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->key_id, blob.key_id);
  EXPECT_EQ(parsed->key_version_id, blob.key_version_id);
  EXPECT_EQ(parsed->iv, blob.iv);
  EXPECT_EQ(parsed->ciphertext, blob.ciphertext);
}

TEST(CiphertextBlobTest, LayoutMatchesTheDocumentedOffsets) {
  const CiphertextBlob blob = SampleBlob(5);
  const std::string wire = blob.Serialize();
  ASSERT_EQ(wire.size(), 45u + 5u + 16u);
  EXPECT_EQ(static_cast<uint8_t>(wire[0]), 0x01);
  EXPECT_EQ(wire.substr(1, 16), *UuidToBytes(blob.key_id));
  EXPECT_EQ(wire.substr(17, 16), *UuidToBytes(blob.key_version_id));
  EXPECT_EQ(wire.substr(33, 12), blob.iv);
  EXPECT_EQ(wire.substr(45), blob.ciphertext);
  EXPECT_EQ(blob.AadHeader(), wire.substr(0, 33));
}

TEST(CiphertextBlobTest, EveryTruncationIsInvalidCiphertext) {
  const std::string wire = SampleBlob(1).Serialize();  // the shortest valid blob
  for (size_t n = 0; n < wire.size(); ++n) {
    absl::StatusOr<CiphertextBlob> parsed = CiphertextBlob::Parse(wire.substr(0, n));
    ASSERT_FALSE(parsed.ok()) << "length " << n;
    EXPECT_EQ(ErrorTypeOf(parsed.status()), "InvalidCiphertextException");
  }
}

TEST(CiphertextBlobTest, OversizedBlobIsInvalidCiphertext) {
  std::string wire = SampleBlob(kMaxBlobPlaintext).Serialize();
  ASSERT_TRUE(CiphertextBlob::Parse(wire).ok());
  wire.push_back('\0');
  EXPECT_EQ(ErrorTypeOf(CiphertextBlob::Parse(wire).status()), "InvalidCiphertextException");
}

TEST(CiphertextBlobTest, UnknownFormatVersionIsInvalidCiphertext) {
  for (int version : {0x00, 0x02, 0xff}) {
    std::string wire = SampleBlob().Serialize();
    wire[0] = static_cast<char>(version);
    EXPECT_EQ(ErrorTypeOf(CiphertextBlob::Parse(wire).status()), "InvalidCiphertextException")
        << version;
  }
}

TEST(CiphertextBlobTest, ParseErrorsAllReadTheSame) {
  const absl::Status truncated = CiphertextBlob::Parse("\x01").status();
  const absl::Status bad_version = CiphertextBlob::Parse(std::string(100, '\x09')).status();
  EXPECT_EQ(truncated.message(), bad_version.message());
  EXPECT_EQ(truncated.code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kms::service
