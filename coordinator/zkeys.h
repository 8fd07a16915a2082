/* zkeys.h: CurveZMQ key files (prefix zk_), shared by wanfarm-coord and wanctl.
 * A key file holds one Z85 key (40 characters) on its first line, as `wanfarm-coord --keygen`
 * writes it. zk_read refuses a file that is not a regular file or a key that is not Z85; with
 * ZK_PRIVATE also a file others may read (a secret key must be mode 0600), with ZK_NO_TEST_KEYS
 * the CurveZMQ documentation's published test keys.
 * Tested by: tests/test_coord.sh (section 4).
 */
#ifndef ZK_ZKEYS_H
#define ZK_ZKEYS_H

#define ZK_LEN 40

enum { ZK_PRIVATE = 1, ZK_NO_TEST_KEYS = 2 };
/* 0 with the key in out, or -1 (flags: ZK_*). */
int zk_read(const char *path, char out[ZK_LEN + 1], unsigned flags);

#endif
