// client/key_material.h: wrapping checked by unwrapping with plain OpenSSL,
// the AES-KWP layer against RFC 5649's test vectors, material files,
// components and key check values.
#include "client/key_material.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/test_wrapping_key.h"
#include "tests/testing/daemon_process.h"

namespace kms::client {
namespace {

using ::kms::testing::TempDir;
using ::kms::testing::TestWrappingKey;
using ::testing::HasSubstr;

SecretBytes FromHex(absl::string_view hex) {
  std::string bytes = absl::HexStringToBytes(hex);
  return SecretBytes::TakeFrom(&bytes);
}

SecretBytes Material(char fill) { return SecretBytes::CopyFrom(std::string(32, fill)); }

SecretBytes CountingMaterial() {
  SecretBytes m(32);
  for (int i = 0; i < 32; ++i) m.mutable_data()[i] = static_cast<uint8_t>(i * 7 + 1);
  return m;
}



// One RSA key for the whole suite: generation takes a while.
const TestWrappingKey& WrappingKey() {
  static const TestWrappingKey* key = new TestWrappingKey(2048);
  return *key;
}

// ------------------------------------------------------------ wrapping

class WrapKeyMaterialTest : public ::testing::TestWithParam<v1::AlgorithmSpec> {};

TEST_P(WrapKeyMaterialTest, UnwrapsToTheMaterialWithPlainOpenSsl) {
  SecretBytes material = CountingMaterial();

  absl::StatusOr<std::string> wrapped =
      WrapKeyMaterial(WrappingKey().PublicKeyDer(), GetParam(), material);

  ASSERT_TRUE(wrapped.ok()) << wrapped.status();
  const bool key_wrap =
      GetParam() == v1::RSA_AES_KEY_WRAP_SHA_1 || GetParam() == v1::RSA_AES_KEY_WRAP_SHA_256;
  // The RSA part is as long as the modulus; AES-KWP of 32 bytes is 40.
  EXPECT_EQ(wrapped->size(), WrappingKey().ModulusBytes() + (key_wrap ? 40 : 0));
  absl::StatusOr<SecretBytes> unwrapped = WrappingKey().Unwrap(GetParam(), *wrapped);
  ASSERT_TRUE(unwrapped.ok()) << unwrapped.status();
  EXPECT_TRUE(unwrapped->Equals(material));
}

TEST_P(WrapKeyMaterialTest, IsRandomizedEachTime) {
  SecretBytes material = CountingMaterial();
  absl::StatusOr<std::string> a =
      WrapKeyMaterial(WrappingKey().PublicKeyDer(), GetParam(), material);
  absl::StatusOr<std::string> b =
      WrapKeyMaterial(WrappingKey().PublicKeyDer(), GetParam(), material);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
}

TEST_P(WrapKeyMaterialTest, DoesNotUnwrapWithTheOtherHash) {
  v1::AlgorithmSpec other;
  switch (GetParam()) {
    case v1::RSAES_OAEP_SHA_1:
      other = v1::RSAES_OAEP_SHA_256;
      break;
    case v1::RSAES_OAEP_SHA_256:
      other = v1::RSAES_OAEP_SHA_1;
      break;
    case v1::RSA_AES_KEY_WRAP_SHA_1:
      other = v1::RSA_AES_KEY_WRAP_SHA_256;
      break;
    default:
      other = v1::RSA_AES_KEY_WRAP_SHA_1;
      break;
  }
  absl::StatusOr<std::string> wrapped =
      WrapKeyMaterial(WrappingKey().PublicKeyDer(), GetParam(), CountingMaterial());
  ASSERT_TRUE(wrapped.ok());
  EXPECT_FALSE(WrappingKey().Unwrap(other, *wrapped).ok());
}

INSTANTIATE_TEST_SUITE_P(AllAlgorithms, WrapKeyMaterialTest,
                         ::testing::Values(v1::RSAES_OAEP_SHA_1, v1::RSAES_OAEP_SHA_256,
                                           v1::RSA_AES_KEY_WRAP_SHA_1,
                                           v1::RSA_AES_KEY_WRAP_SHA_256),
                         [](const ::testing::TestParamInfo<v1::AlgorithmSpec>& info) {
                           return v1::AlgorithmSpec_Name(info.param);
                         });

struct BadWrapCase {
  std::string name;
  std::string public_key_der;  // "" -> the suite's key
  v1::AlgorithmSpec algorithm;
  size_t material_size;
  std::string message;
};

class WrapKeyMaterialRejectsTest : public ::testing::TestWithParam<BadWrapCase> {};

TEST_P(WrapKeyMaterialRejectsTest, WithInvalidArgument) {
  const BadWrapCase& c = GetParam();
  std::string der = c.public_key_der.empty() ? WrappingKey().PublicKeyDer() : c.public_key_der;
  absl::StatusOr<std::string> wrapped =
      WrapKeyMaterial(der, c.algorithm, SecretBytes::CopyFrom(std::string(c.material_size, 'k')));
  EXPECT_EQ(wrapped.status().code(), absl::StatusCode::kInvalidArgument) << wrapped.status();
  EXPECT_THAT(std::string(wrapped.status().message()), HasSubstr(c.message));
}

// An EC P-256 SubjectPublicKeyInfo (a valid key, but not RSA).
std::string EcPublicKeyDer() {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  unsigned char* der = nullptr;
  int length = i2d_PUBKEY(key.get(), &der);
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(length));
  OPENSSL_free(der);
  return out;
}

INSTANTIATE_TEST_SUITE_P(
    BadInput, WrapKeyMaterialRejectsTest,
    ::testing::Values(
        BadWrapCase{"GarbageKey", "not a key", v1::RSAES_OAEP_SHA_256, 32, "SubjectPublicKeyInfo"},
        BadWrapCase{"TrailingBytes", WrappingKey().PublicKeyDer() + "x", v1::RSAES_OAEP_SHA_256, 32,
                    "1 bytes after"},
        BadWrapCase{"EcKey", EcPublicKeyDer(), v1::RSA_AES_KEY_WRAP_SHA_256, 32, "not an RSA key"},
        BadWrapCase{"ShortMaterial", "", v1::RSAES_OAEP_SHA_256, 31, "must be 32 bytes, got 31"},
        BadWrapCase{"LongMaterial", "", v1::RSA_AES_KEY_WRAP_SHA_256, 33,
                    "must be 32 bytes, got 33"},
        BadWrapCase{"EmptyMaterial", "", v1::RSAES_OAEP_SHA_1, 0, "must be 32 bytes, got 0"},
        BadWrapCase{"UnspecifiedAlgorithm", "", v1::ALGORITHM_SPEC_UNSPECIFIED, 32,
                    "wrapping algorithm must be one of"}),
    [](const ::testing::TestParamInfo<BadWrapCase>& info) { return info.param.name; });

// ------------------------------------------------------------ AES-KWP

// RFC 5649 section 6: the two vectors, both under a 192-bit KEK.
TEST(AesKeyWrapWithPaddingTest, MatchesRfc5649TwentyOctetVector) {
  SecretBytes kek = FromHex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8");
  absl::StatusOr<std::string> wrapped =
      AesKeyWrapWithPadding(kek, FromHex("c37b7e6492584340bed12207808941155068f738"));
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();
  EXPECT_EQ(absl::BytesToHexString(*wrapped),
            "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a");
}

TEST(AesKeyWrapWithPaddingTest, MatchesRfc5649SevenOctetVector) {
  SecretBytes kek = FromHex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8");
  absl::StatusOr<std::string> wrapped = AesKeyWrapWithPadding(kek, FromHex("466f7250617369"));
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();
  EXPECT_EQ(absl::BytesToHexString(*wrapped), "afbeb0f07dfbf5419200f2ccb50bb24f");
}

TEST(AesKeyWrapWithPaddingTest, ThirtyTwoBytesUnderAnAes256KeyRoundTrip) {
  SecretBytes kek = Material('\x5a');
  absl::StatusOr<std::string> wrapped = AesKeyWrapWithPadding(kek, CountingMaterial());
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();
  EXPECT_EQ(wrapped->size(), 40u);
  absl::StatusOr<SecretBytes> unwrapped = TestWrappingKey::KwpUnwrap(kek, *wrapped);
  ASSERT_TRUE(unwrapped.ok());
  EXPECT_TRUE(unwrapped->Equals(CountingMaterial()));
}

TEST(AesKeyWrapWithPaddingTest, RejectsABadKekSizeAndEmptyInput) {
  EXPECT_EQ(
      AesKeyWrapWithPadding(SecretBytes::CopyFrom("short"), CountingMaterial()).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AesKeyWrapWithPadding(Material('k'), SecretBytes()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ------------------------------------------------------------ KCV

TEST(KeyCheckValueTest, OfTheAllZeroKeyIsDC95C0) {
  // AES-256-ECB(zero key, zero block) = dc95c078a2408989ad48a21492842087.
  absl::StatusOr<std::string> kcv = KeyCheckValue(Material('\0'));
  ASSERT_TRUE(kcv.ok()) << kcv.status();
  EXPECT_EQ(*kcv, "DC95C0");
}

TEST(KeyCheckValueTest, RejectsMaterialThatIsNot32Bytes) {
  EXPECT_EQ(KeyCheckValue(SecretBytes::CopyFrom(std::string(16, '\0'))).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(KeyCheckValueTest, ParsesSixHexDigitsInEitherCase) {
  EXPECT_EQ(*ParseKeyCheckValue("dc95c0"), "DC95C0");
  EXPECT_EQ(*ParseKeyCheckValue("Dc95C0"), "DC95C0");
  for (const char* bad : {"", "DC95C", "DC95C00", "DC95CG", "0xDC95", " DC95C0"}) {
    absl::StatusOr<std::string> kcv = ParseKeyCheckValue(bad);
    EXPECT_EQ(kcv.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(kcv.status().message()), HasSubstr("6 hex digits")) << bad;
  }
}

TEST(KeyCheckValueTest, ComparesIgnoringCase) {
  EXPECT_TRUE(SameKeyCheckValue("dc95c0", "DC95C0"));
  EXPECT_FALSE(SameKeyCheckValue("DC95C1", "DC95C0"));
}

// ------------------------------------------------------------ components

TEST(CombineKeyComponentsTest, IsTheXorOfAll) {
  std::vector<SecretBytes> parts;
  parts.push_back(Material('\x0f'));
  parts.push_back(Material('\xf0'));
  parts.push_back(Material('\x33'));
  absl::StatusOr<SecretBytes> combined = CombineKeyComponents(parts);
  ASSERT_TRUE(combined.ok()) << combined.status();
  EXPECT_TRUE(combined->Equals(Material('\xcc')));  // 0f ^ f0 ^ 33
}

TEST(CombineKeyComponentsTest, OfAComponentWithItselfIsZero) {
  std::vector<SecretBytes> parts;
  parts.push_back(CountingMaterial());
  parts.push_back(CountingMaterial());
  absl::StatusOr<SecretBytes> combined = CombineKeyComponents(parts);
  ASSERT_TRUE(combined.ok());
  EXPECT_EQ(*KeyCheckValue(*combined), "DC95C0");
}

TEST(CombineKeyComponentsTest, RejectsFewerThanTwoOrAWrongSize) {
  std::vector<SecretBytes> one;
  one.push_back(Material('a'));
  EXPECT_EQ(CombineKeyComponents(one).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<SecretBytes> uneven;
  uneven.push_back(Material('a'));
  uneven.push_back(SecretBytes::CopyFrom("short"));
  absl::StatusOr<SecretBytes> combined = CombineKeyComponents(uneven);
  EXPECT_EQ(combined.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(combined.status().message()), HasSubstr("component 2"));
}

// ------------------------------------------------------------ files

class KeyMaterialFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TempDir>> dir = TempDir::Create("key-material-test");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = std::move(*dir);
  }
  std::string Path(const std::string& name) const { return dir_->path() + "/" + name; }

  std::unique_ptr<TempDir> dir_;
};

TEST_F(KeyMaterialFileTest, ReadsExactly32Bytes) {
  testing::WriteTestFile(Path("m"), std::string(32, 'm'));
  absl::StatusOr<SecretBytes> material = ReadKeyMaterialFile(Path("m"));
  ASSERT_TRUE(material.ok()) << material.status();
  EXPECT_TRUE(material->Equals(Material('m')));
}

TEST_F(KeyMaterialFileTest, RejectsOtherSizesNamingTheSize) {
  for (size_t size : {0, 31, 33, 64, 1000}) {
    testing::WriteTestFile(Path("m"), std::string(size, 'a'));
    absl::StatusOr<SecretBytes> material = ReadKeyMaterialFile(Path("m"));
    EXPECT_EQ(material.status().code(), absl::StatusCode::kInvalidArgument) << size;
    EXPECT_THAT(std::string(material.status().message()),
                HasSubstr(absl::StrCat("holds ", size, " bytes")));
  }
}

TEST_F(KeyMaterialFileTest, MissingFileIsNotFound) {
  EXPECT_EQ(ReadKeyMaterialFile(Path("absent")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(KeyMaterialFileTest, GeneratedMaterialIsWrittenPrivateAndReadsBack) {
  absl::StatusOr<SecretBytes> material = GenerateKeyMaterial();
  ASSERT_TRUE(material.ok()) << material.status();
  EXPECT_EQ(material->size(), 32u);
  mode_t old_mask = umask(0);  // a lax umask must not widen the file
  absl::Status written = WriteNewKeyMaterialFile(Path("new"), *material);
  umask(old_mask);
  ASSERT_TRUE(written.ok()) << written;
  struct stat st {};
  ASSERT_EQ(stat(Path("new").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  absl::StatusOr<SecretBytes> back = ReadKeyMaterialFile(Path("new"));
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->Equals(*material));
}

TEST_F(KeyMaterialFileTest, GeneratedMaterialDiffersEachTime) {
  absl::StatusOr<SecretBytes> a = GenerateKeyMaterial();
  absl::StatusOr<SecretBytes> b = GenerateKeyMaterial();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_FALSE(a->Equals(*b));
}

TEST_F(KeyMaterialFileTest, NeverOverwritesAFile) {
  testing::WriteTestFile(Path("existing"), "keep me");
  absl::Status status = WriteNewKeyMaterialFile(Path("existing"), Material('x'));
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_EQ(testing::ReadTestFile(Path("existing")), "keep me");
}

TEST_F(KeyMaterialFileTest, NeverFollowsALink) {
  ASSERT_EQ(symlink(Path("target").c_str(), Path("link").c_str()), 0);
  absl::Status status = WriteNewKeyMaterialFile(Path("link"), Material('x'));
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_NE(access(Path("target").c_str(), F_OK), 0);  // not created through the link
}

}  // namespace
}  // namespace kms::client
