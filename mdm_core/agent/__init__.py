"""The reference device agent: Linux posture collector, device-protocol client, loopback helper.

It speaks the same HTTP protocol as any managed device (enroll with a CSR, check in with
``DeviceProof`` JWTs, execute commands, long-poll for new ones) and, for browser logins, serves
signed login proofs on 127.0.0.1 to the gateway's origin only. Like the rest of ``mdm_core`` it
imports nothing from ``posture_gateway`` or ``idp_connectors``.

The reference agent never acts destructively on its host: ``lock``, ``wipe`` and the other
device commands are recorded in its state directory and acknowledged, nothing more.
"""
