#!/usr/bin/env python3
"""Extracts the plaintext handshake packets of a classic-pcap ACIP TCP capture (Ethernet, IPv4/IPv6,
TCP port 27224) into a record file the Rust tests replay.

Usage: python3 extract_handshake.py ../../../shared/captures/tcp_encrypted.pcap tcp_encrypted_handshake.bin

Each TCP direction's payload bytes are concatenated in capture order (the capture has no retransmissions
on loopback; segments are appended as seen), then split into ACIP packets by the 22-byte header. Every
packet up to and including the first ENCRYPTED (1200) one in either direction is written; the 1200 packets
themselves are not. Record format: [dir u8: 0 = client->server, 1 = server->client][whole packet bytes],
repeated; the packet header's length field delimits it. Records are in the order their last byte was seen.
Python 3 standard library only.
"""
import struct
import sys

PORT = 27224
MAGIC = bytes.fromhex("0000000A5C11C4A1")


def frames(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    assert linktype == 1, "expected Ethernet link type"
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        yield data[off + 16:off + 16 + incl]
        off += 16 + incl


def tcp_payload(frame):
    ethertype = struct.unpack(">H", frame[12:14])[0]
    ip = frame[14:]
    if ethertype == 0x0800:
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 6:
            return None
        total = struct.unpack(">H", ip[2:4])[0]
        tcp = ip[ihl:total]
    elif ethertype == 0x86DD:
        if ip[6] != 6:  # no extension headers on loopback captures
            return None
        plen = struct.unpack(">H", ip[4:6])[0]
        tcp = ip[40:40 + plen]
    else:
        return None
    sport, dport = struct.unpack(">HH", tcp[0:4])
    doff = (tcp[12] >> 4) * 4
    return sport, dport, tcp[doff:]


def main(src, dst):
    streams = {0: b"", 1: b""}
    offsets = {0: 0, 1: 0}
    records = []
    done = {0: False, 1: False}
    for frame in frames(src):
        parsed = tcp_payload(frame)
        if not parsed:
            continue
        sport, dport, payload = parsed
        if not payload or PORT not in (sport, dport):
            continue
        d = 0 if dport == PORT else 1
        streams[d] += payload
        while not done[d]:
            buf, o = streams[d], offsets[d]
            if len(buf) - o < 22:
                break
            assert buf[o:o + 8] == MAGIC, "lost packet sync"
            ptype, length = struct.unpack(">HI", buf[o + 8:o + 14])
            if len(buf) - o < 22 + length:
                break
            if ptype == 1200:
                done[d] = True
                break
            records.append(bytes([d]) + buf[o:o + 22 + length])
            offsets[d] = o + 22 + length
        if done[0] and done[1]:
            break
    with open(dst, "wb") as f:
        for r in records:
            f.write(r)
    for r in records:
        ptype, length = struct.unpack(">HI", r[9:15])
        print(("C->S" if r[0] == 0 else "S->C"), ptype, length)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
