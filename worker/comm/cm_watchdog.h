/* cm_watchdog.h: what comm.c tells the watchdog (watchdog.c) around each blocking call. Internal
 * to worker/comm/. */
#ifndef CM_WATCHDOG_H
#define CM_WATCHDOG_H

#include "comm.h"

/* A blocking call of c starts (peer: the rank of c waited for in a point-to-point call, else -1);
 * and ends, however it ends. No-ops while the watchdog is not running. */
void cm_wd_enter(const cm_comm *c, cm_op op, int peer);
void cm_wd_leave(void);

#endif
