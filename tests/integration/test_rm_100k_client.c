/*
 * test_rm_100k with a client that attaches the full map's dataspace and reads
 * it: core maps 100,000 windows into it at once.
 */
#define CLIENT 1
#include "test_rm_100k.c"
