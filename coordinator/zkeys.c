/* zkeys.c: CurveZMQ key files (see zkeys.h). */
#include "zkeys.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <zmq.h>

/* the CurveZMQ documentation's example keys: never a farm's */
static const char *const k_test_keys[] = {
    "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7", "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6",
    "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID", "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"};

int zk_read(const char *path, char out[ZK_LEN + 1], unsigned flags) {
    struct stat sb;
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int ok = fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) &&
             (!(flags & ZK_PRIVATE) || (sb.st_mode & 077) == 0);
    char buf[128] = "";
    ok = ok && fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!ok || strcspn(buf, " \t\r\n") != ZK_LEN) return -1;
    memcpy(out, buf, ZK_LEN);
    out[ZK_LEN] = 0;
    for (size_t k = 0; (flags & ZK_NO_TEST_KEYS) && k < sizeof k_test_keys / sizeof *k_test_keys; k++)
        if (!strcmp(out, k_test_keys[k])) return -1;
    uint8_t raw[32];
    return zmq_z85_decode(raw, out) ? 0 : -1;
}
