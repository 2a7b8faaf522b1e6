// Package sysvipc reads and recreates System V semaphore sets and message
// queues (semctl, msgctl, msgrcv with MSG_COPY), which golang.org/x/sys
// does not wrap. Shared memory segments are in x/sys (SysvShm*).
package sysvipc
