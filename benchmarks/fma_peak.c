/*
 * One core's float32 FMA peak, 256-bit (AVX2) and 512-bit (AVX-512) vectors: the ceiling
 * docs/PERFORMANCE.md holds the kernels' GFLOP/s against.
 *
 *     cc -O2 -mavx512f benchmarks/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak
 *
 * 24 independent accumulators per loop trip (more than FMA latency x FMA pipes on any
 * current x86 core), operands in registers, nothing else in the loop: what the FMA units
 * sustain, not what any GEMM reaches. Some AMD EPYC parts issue one 512-bit FMA per cycle
 * (the two rates then agree), others two (512-bit doubles the rate).
 */
#include <stdio.h>
#include <time.h>

#define FMA24(w)                                                                              \
    __asm__ volatile(                                                                         \
        "vfmadd231ps %%" w "30, %%" w "31, %%" w "0\n vfmadd231ps %%" w "30, %%" w "31, %%" w \
        "1\n vfmadd231ps %%" w "30, %%" w "31, %%" w "2\n vfmadd231ps %%" w "30, %%" w       \
        "31, %%" w "3\n vfmadd231ps %%" w "30, %%" w "31, %%" w "4\n vfmadd231ps %%" w       \
        "30, %%" w "31, %%" w "5\n vfmadd231ps %%" w "30, %%" w "31, %%" w "6\n vfmadd231ps " \
        "%%" w "30, %%" w "31, %%" w "7\n vfmadd231ps %%" w "30, %%" w "31, %%" w "8\n "     \
        "vfmadd231ps %%" w "30, %%" w "31, %%" w "9\n vfmadd231ps %%" w "30, %%" w "31, %%" w \
        "10\n vfmadd231ps %%" w "30, %%" w "31, %%" w "11\n vfmadd231ps %%" w "30, %%" w     \
        "31, %%" w "12\n vfmadd231ps %%" w "30, %%" w "31, %%" w "13\n vfmadd231ps %%" w     \
        "30, %%" w "31, %%" w "14\n vfmadd231ps %%" w "30, %%" w "31, %%" w "15\n "          \
        "vfmadd231ps %%" w "30, %%" w "31, %%" w "16\n vfmadd231ps %%" w "30, %%" w "31, %%" \
        w "17\n vfmadd231ps %%" w "30, %%" w "31, %%" w "18\n vfmadd231ps %%" w "30, %%" w   \
        "31, %%" w "19\n vfmadd231ps %%" w "30, %%" w "31, %%" w "20\n vfmadd231ps %%" w     \
        "30, %%" w "31, %%" w "21\n vfmadd231ps %%" w "30, %%" w "31, %%" w "22\n "          \
        "vfmadd231ps %%" w "30, %%" w "31, %%" w "23\n" ::                                    \
            : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",  \
              "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17",         \
              "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23")

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(void) {
    const long trips = 50000000;
    double t0 = seconds();
    for (long k = 0; k < trips; k++) FMA24("ymm");
    double t1 = seconds();
    for (long k = 0; k < trips; k++) FMA24("zmm");
    double t2 = seconds();
    /* 24 FMAs of 8 (ymm) or 16 (zmm) lanes, 2 flops each */
    printf("256-bit FMA: %.1f GFLOP/s\n", trips * 24.0 * 16 / (t1 - t0) / 1e9);
    printf("512-bit FMA: %.1f GFLOP/s\n", trips * 24.0 * 32 / (t2 - t1) / 1e9);
    return 0;
}
