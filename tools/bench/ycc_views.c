/*
 * Measures what a YCbCr-domain train view would buy and cost (BENCHMARKS.md, "Where the
 * time goes"): libjpeg hands out its raw planes (no chroma upsampling, no colour
 * conversion), Y is resized at full resolution and Cb, Cr at their own (the crop box
 * halved for 4:2:0), and the colour conversion runs on the 224 x 224 result. Against
 * the exact view (RGB decode, RGB resize; Pillow's bytes) on the same RandomResizedCrop
 * boxes: the mean and largest difference, and the full-decode time of both decodes.
 * The planar resize here runs the kernels' scalar one-channel path, so its time says
 * nothing yet: a SIMD one-channel horizontal pass is what the real thing needs.
 * A prototype for the decision, not part of noisy; baseline 4:2:0 files only.
 *
 *   gcc -O2 -ISources/CPixelKernels/include -o /tmp/ycc_views tools/bench/ycc_views.c \
 *       Sources/CPixelKernels/resample.c Sources/CPixelKernels/output.c -ljpeg -lm
 *   /tmp/ycc_views $(find /tmp/noisy-bench-pipeline/jpegs -name '*.jpg' | sort | head -400)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jpeglib.h>
#include "CPixelKernels.h"
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static unsigned char *readf(const char *p, size_t *n){FILE*f=fopen(p,"rb");fseek(f,0,2);*n=ftell(f);fseek(f,0,0);unsigned char*b=malloc(*n);fread(b,1,*n,f);fclose(f);return b;}
static int decode_rgb(const unsigned char *d, size_t n, unsigned char **out, int *w, int *h){
  struct jpeg_decompress_struct c; struct jpeg_error_mgr e; c.err=jpeg_std_error(&e); jpeg_create_decompress(&c);
  jpeg_mem_src(&c,d,n); jpeg_read_header(&c,TRUE); c.out_color_space=JCS_RGB; jpeg_start_decompress(&c);
  *w=c.output_width;*h=c.output_height; *out=malloc((size_t)*w**h*3);
  while(c.output_scanline<c.output_height){JSAMPROW r=*out+(size_t)c.output_scanline**w*3; jpeg_read_scanlines(&c,&r,1);}
  jpeg_finish_decompress(&c); jpeg_destroy_decompress(&c); return 0;}
/* Raw 4:2:0 planes: Y w x h (padded to MCU), Cb/Cr (w/2) x (h/2). */
static int decode_raw(const unsigned char *d, size_t n, unsigned char *pl[3], int pw[3], int ph[3], int *w, int *h){
  struct jpeg_decompress_struct c; struct jpeg_error_mgr e; c.err=jpeg_std_error(&e); jpeg_create_decompress(&c);
  jpeg_mem_src(&c,d,n); jpeg_read_header(&c,TRUE);
  if (c.num_components!=3 || c.comp_info[0].h_samp_factor!=2 || c.comp_info[0].v_samp_factor!=2) { jpeg_destroy_decompress(&c); return -1; }
  c.raw_data_out=TRUE; c.out_color_space=JCS_YCbCr; jpeg_start_decompress(&c);
  *w=c.output_width;*h=c.output_height;
  for(int k=0;k<3;k++){ pw[k]=c.comp_info[k].width_in_blocks*8; ph[k]=c.comp_info[k].height_in_blocks*8 + 16; pl[k]=malloc((size_t)pw[k]*ph[k]); }
  JSAMPROW rows[3][16]; JSAMPARRAY arr[3]={rows[0],rows[1],rows[2]};
  int y=0;
  while(c.output_scanline<c.output_height){
    for(int i=0;i<16;i++) rows[0][i]=pl[0]+(size_t)(y+i)*pw[0];
    for(int i=0;i<8;i++){ rows[1][i]=pl[1]+(size_t)(y/2+i)*pw[1]; rows[2][i]=pl[2]+(size_t)(y/2+i)*pw[2]; }
    jpeg_read_raw_data(&c,arr,16); y+=16;
  }
  jpeg_finish_decompress(&c); jpeg_destroy_decompress(&c); return 0;}
static inline unsigned char clamp(int v){return v<0?0:v>255?255:v;}
int main(int argc,char**argv){
  int S=224; srand(1); pk_scratch sc; memset(&sc,0,sizeof sc);
  double sum=0; long cnt=0; int maxd=0; double t_rgb=0,t_raw=0,t_rs_rgb=0,t_rs_pl=0; int used=0;
  unsigned char *A=malloc(S*S*3),*B=malloc(S*S*3),*Y=malloc(S*S),*Cb=malloc(S*S),*Cr=malloc(S*S);
  for(int f=1;f<argc;f++){
    size_t n; unsigned char *d=readf(argv[f],&n);
    unsigned char *rgb; int w,h; double t0=now(); decode_rgb(d,n,&rgb,&w,&h); t_rgb+=now()-t0;
    unsigned char *pl[3]; int pw[3],ph[3],w2,h2; t0=now(); if(decode_raw(d,n,pl,pw,ph,&w2,&h2)){free(d);free(rgb);continue;} t_raw+=now()-t0; used++;
    /* RandomResizedCrop box */
    double s=0.08+0.92*rand()/(double)RAND_MAX, ar=exp(log(0.75)+(log(4.0/3)-log(0.75))*rand()/(double)RAND_MAX);
    int cw=(int)(sqrt(w*h*s*ar)+.5), ch=(int)(sqrt(w*h*s/ar)+.5); if(cw>w)cw=w; if(ch>h)ch=h;
    int cx=rand()%(w-cw+1), cy=rand()%(h-ch+1);
    t0=now(); pk_resample(rgb,w,h,3,cx,cy,cx+cw,cy+ch,A,S,S,PK_FILTER_BILINEAR,&sc); t_rs_rgb+=now()-t0;
    t0=now();
    pk_resample_strided(pl[0],w,h,pw[0],1,cx,cy,cx+cw,cy+ch,Y,S,S,PK_FILTER_BILINEAR,&sc);
    int cwid=(w+1)/2, chei=(h+1)/2;
    pk_resample_strided(pl[1],cwid,chei,pw[1],1,cx/2.0f,cy/2.0f,(cx+cw)/2.0f,(cy+ch)/2.0f,Cb,S,S,PK_FILTER_BILINEAR,&sc);
    pk_resample_strided(pl[2],cwid,chei,pw[2],1,cx/2.0f,cy/2.0f,(cx+cw)/2.0f,(cy+ch)/2.0f,Cr,S,S,PK_FILTER_BILINEAR,&sc);
    for(int i=0;i<S*S;i++){ int yy=Y[i], cb=Cb[i]-128, cr=Cr[i]-128;
      B[3*i]=clamp(yy+(int)lrint(1.402*cr)); B[3*i+1]=clamp(yy-(int)lrint(0.344136*cb+0.714136*cr)); B[3*i+2]=clamp(yy+(int)lrint(1.772*cb)); }
    t_rs_pl+=now()-t0;
    for(int i=0;i<S*S*3;i++){int dd=abs((int)A[i]-(int)B[i]); sum+=dd; cnt++; if(dd>maxd)maxd=dd;}
    free(d); free(rgb); for(int k=0;k<3;k++) free(pl[k]);
  }
  printf("%d images: mean |diff| %.3f, max %d\n", used, sum/cnt, maxd);
  printf("full decode RGB %.0f us, raw planes %.0f us (%.2fx)\n", 1e6*t_rgb/used, 1e6*t_raw/used, t_rgb/t_raw);
  printf("resize RGB %.0f us; planar (scalar 1-channel) + convert %.0f us\n", 1e6*t_rs_rgb/used, 1e6*t_rs_pl/used);
}
