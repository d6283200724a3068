/*
 * PK_HOT: the hot loops are built twice, for AVX2 and for baseline x86-64, and the
 * loader picks one at start-up (ifunc): one binary that is fast where AVX2 exists
 * and still runs where it does not. AVX2 does not bring FMA, so no multiply-add
 * is fused and both builds compute the same values.
 */
#ifndef PK_HOT_H
#define PK_HOT_H
#if defined(__x86_64__) && defined(__linux__)
#define PK_HOT __attribute__((target_clones("avx2", "default")))
#else
#define PK_HOT
#endif
#endif
