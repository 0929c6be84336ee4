/*
 * The 4 x 4 tile kernel against one dot product per (row, token) pair, one thread, same data:
 * 512 rows x 64 tokens x 2048 columns.
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc bench/bench_tile.c build/libllamac.a -lcjson -lm -lpthread -o /tmp/bench_tile
 *   /tmp/bench_tile q4_0      (or q8_0)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "kernels/types.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc, char **argv){
  int type = llc_type_from_name(argc > 1 ? argv[1] : "q4_0");
  if (type < 0 || !llc_kernels_get()->gemm4[type]) { fprintf(stderr, "no tile kernel for that type here\n"); return 2; }
  int64_t n=2048; int rows=512, toks=64;
  size_t ws=llc_row_size(type,n), xs=llc_act_row_bytes(type,n);
  char *w=malloc(ws*rows), *x=malloc(xs*toks); float *row=malloc(n*4), *out=malloc(rows*toks*4);
  for(int r=0;r<rows;r++){for(int i=0;i<n;i++)row[i]=(float)((r*7+i*13)%17)-8; llc_type_get(type)->from_float(row,w+r*ws,n);}
  for(int t=0;t<toks;t++){for(int i=0;i<n;i++)row[i]=(float)((t*5+i*11)%13)-6; llc_act_convert(type,row,x+t*xs,n,1);}
  const llc_kernels *k=llc_kernels_get();
  for(int rep=0;rep<3;rep++){
    double t0=now();
    for(int r=0;r<rows;r++) for(int t=0;t<toks;t++) out[t*rows+r]=k->vec_dot[type](n,w+r*ws,x+t*xs);
    double a=now()-t0; t0=now();
    for(int r=0;r<rows;r+=4) for(int t=0;t<toks;t+=4) k->gemm4[type](n,w+r*ws,ws,x+t*xs,xs,out+t*rows+r,rows);
    double b=now()-t0;
    printf("%s: vec_dot %.2f ns/block-pair, gemm4 %.2f ns/block-pair (%.1fx)\n", llc_type_name(type), a*1e9/(rows*toks*(n/32.0)), b*1e9/(rows*toks*(n/32.0)), a/b);
  }
  return 0;}
