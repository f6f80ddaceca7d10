#!/usr/bin/python3
"""kmsd driven from Python: proves the proto is usable outside C++.

Generates Python stubs from proto/kms/v1/kms.proto at test time (Debian's
protoc and grpc_python_plugin), starts the real kmsd binary on a free
loopback port with a fresh data directory (plaintext development mode), and runs envelope-encryption
calls through grpcio, including an error and its kms-error-type trailer.

Usage: python_client_test.py --kmsd PATH --proto-root DIR
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

ARGS = None


def generate_stubs(proto_root, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    plugin = shutil.which("grpc_python_plugin") or "/usr/bin/grpc_python_plugin"
    subprocess.run(
        ["protoc", f"-I{proto_root}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
         f"--plugin=protoc-gen-grpc_python={plugin}", "kms/v1/kms.proto"],
        check=True)
    for d in ("kms", "kms/v1"):
        open(os.path.join(out_dir, d, "__init__.py"), "a").close()
    sys.path.insert(0, out_dir)


# The default key policy lets the creator manage a key but not use it
# (separation of duties); these tests use their keys.
USE_POLICY = '{"Statement":[{"Effect":"Allow","Principal":"python-e2e","Action":"kms:*"}]}'

class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="kmsd-py-")
        generate_stubs(ARGS.proto_root, os.path.join(cls.tmp, "stubs"))
        global grpc, kms_pb2, kms_pb2_grpc
        import grpc
        from kms.v1 import kms_pb2, kms_pb2_grpc
        data_dir = os.path.join(cls.tmp, "data")
        port_file = os.path.join(cls.tmp, "port")
        # kmsd's plaintext development mode: grpc.insecure_channel below.
        config = os.path.join(cls.tmp, "kmsd.yaml")
        with open(config, "w") as f:
            f.write('plaintext:\n  enabled: true\n  principal: "python-e2e"\n'
                    'access:\n  administrators: ["python-e2e"]\n')
        cls.log = open(os.path.join(cls.tmp, "kmsd.log"), "wb")
        cls.kmsd = subprocess.Popen(
            [ARGS.kmsd, "--config", config, "--data-dir", data_dir, "--listen", "127.0.0.1:0",
             "--port-file", port_file],
            stdout=cls.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not os.path.exists(port_file):
            if cls.kmsd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("kmsd did not start: " +
                                   open(os.path.join(cls.tmp, "kmsd.log")).read())
            time.sleep(0.01)  # polling another process's readiness file
        port = int(open(port_file).read())
        cls.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        cls.stub = kms_pb2_grpc.KeyManagementServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.kmsd.send_signal(signal.SIGTERM)
        code = cls.kmsd.wait(timeout=30)
        cls.log.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, f"kmsd exited with {code}"

    def test_envelope_round_trip(self):
        key = self.stub.CreateKey(kms_pb2.CreateKeyRequest(description="from python",
                                                           policy=USE_POLICY))
        self.assertEqual(key.key_metadata.key_state, kms_pb2.ENABLED)
        self.stub.CreateAlias(kms_pb2.CreateAliasRequest(
            alias_name="alias/python", target_key_id=key.key_metadata.key_id))
        context = {"service": "python", "object": "42"}
        data_key = self.stub.GenerateDataKey(kms_pb2.GenerateDataKeyRequest(
            key_id="alias/python", key_spec=kms_pb2.AES_256, encryption_context=context))
        self.assertEqual(len(data_key.plaintext), 32)
        self.assertEqual(data_key.key_id, key.key_metadata.arn)
        plain = self.stub.Decrypt(kms_pb2.DecryptRequest(
            ciphertext_blob=data_key.ciphertext_blob, encryption_context=context))
        self.assertEqual(plain.plaintext, data_key.plaintext)

    def test_errors_carry_code_and_exception_name(self):
        with self.assertRaises(grpc.RpcError) as caught:
            self.stub.DescribeKey(kms_pb2.DescribeKeyRequest(key_id="alias/does-not-exist"))
        self.assertEqual(caught.exception.code(), grpc.StatusCode.NOT_FOUND)
        trailers = dict(caught.exception.trailing_metadata())
        self.assertEqual(trailers.get("kms-error-type"), "NotFoundException")

        key = self.stub.CreateKey(kms_pb2.CreateKeyRequest(policy=USE_POLICY))
        blob = self.stub.Encrypt(kms_pb2.EncryptRequest(
            key_id=key.key_metadata.key_id, plaintext=b"x", encryption_context={"a": "1"}))
        with self.assertRaises(grpc.RpcError) as caught:
            self.stub.Decrypt(kms_pb2.DecryptRequest(
                ciphertext_blob=blob.ciphertext_blob, encryption_context={"a": "2"}))
        self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(dict(caught.exception.trailing_metadata()).get("kms-error-type"),
                         "InvalidCiphertextException")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--kmsd", required=True)
    parser.add_argument("--proto-root", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
