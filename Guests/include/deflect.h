/* Guests: port numbers and helper macros shared by Deflect's guest programs. */
#ifndef DEFLECT_GUEST_H
#define DEFLECT_GUEST_H

#define COM1        0x3f8
#define COM1_LSR    0x3fd       /* line status: bit 0 data ready, bit 5 THR empty */
#define DEBUG_EXIT  0xf4        /* write v: process status (v << 1) | 1 */
#define I8042_CMD   0x64        /* write 0xfe: reset */

#endif
