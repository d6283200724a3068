/*
 * Measures what restart markers would buy the train view (BENCHMARKS.md, "Where the
 * time goes"). Each JPEG is losslessly transcoded with a restart marker every K MCUs
 * (K rounded down to a divisor of the MCUs per row, so segments align with rows),
 * then three decodes are timed on the same RandomResizedCrop boxes, one thread:
 *   full decode; today's region decode (jpeg_skip_scanlines + jpeg_crop_scanline,
 *   stopping below the crop); and a decode of only the restart segments that cover
 *   the crop (plus a 2-pixel margin), spliced into a small JPEG of their own.
 * A prototype for the decision, not part of noisy.
 *
 *   gcc -O2 -o /tmp/jpeg_restarts tools/bench/jpeg_restarts.c -ljpeg -lm
 *   /tmp/jpeg_restarts 5 $(find /tmp/noisy-bench-pipeline/jpegs -name '*.jpg' | head -400)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jpeglib.h>

static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}

/* Lossless transcode with a restart marker every k MCUs. */
static unsigned char *add_restarts(const unsigned char *d, size_t n, int k, unsigned long *outlen, int *mcus_per_row) {
  struct jpeg_decompress_struct src; struct jpeg_error_mgr e1; src.err=jpeg_std_error(&e1);
  jpeg_create_decompress(&src); jpeg_mem_src(&src,d,n); jpeg_read_header(&src,TRUE);
  jvirt_barray_ptr *coefs=jpeg_read_coefficients(&src);
  struct jpeg_compress_struct dst; struct jpeg_error_mgr e2; dst.err=jpeg_std_error(&e2);
  jpeg_create_compress(&dst); unsigned char *out=NULL; *outlen=0; jpeg_mem_dest(&dst,&out,outlen);
  jpeg_copy_critical_parameters(&src,&dst);
  int mw = src.max_h_samp_factor*8; int mpr=(src.image_width+mw-1)/mw; *mcus_per_row=mpr;
  int kk=k; while (mpr % kk) kk--;   /* a divisor, so segments align with rows */
  dst.restart_interval=kk;
  jpeg_write_coefficients(&dst,coefs);
  jpeg_finish_compress(&dst); jpeg_destroy_compress(&dst);
  jpeg_finish_decompress(&src); jpeg_destroy_decompress(&src);
  return out;
}

typedef struct { int sof_h_off; int width, height, mcu_w, mcu_h, mpr, interval; size_t sos_end; size_t *seg; int nseg; } info;

static int parse(const unsigned char *d, size_t n, info *I) {
  size_t p=2; I->interval=0;
  while (p+4<n) {
    if (d[p]!=0xFF) return -1;
    int m=d[p+1]; int len=(d[p+2]<<8)|d[p+3];
    if (m==0xC0||m==0xC1) { I->sof_h_off=p+5; I->height=(d[p+5]<<8)|d[p+6]; I->width=(d[p+7]<<8)|d[p+8];
      int nc=d[p+9]; int hm=1,vm=1; for(int c=0;c<nc;c++){int hv=d[p+11+3*c]; if((hv>>4)>hm)hm=hv>>4; if((hv&15)>vm)vm=hv&15;}
      I->mcu_w=8*hm; I->mcu_h=8*vm; I->mpr=(I->width+I->mcu_w-1)/I->mcu_w; }
    if (m==0xDD) I->interval=(d[p+4]<<8)|d[p+5];
    if (m==0xDA) { I->sos_end=p+2+len; break; }
    p+=2+len;
  }
  /* segment starts */
  int cap=4096; I->seg=malloc(cap*sizeof(size_t)); I->nseg=0; I->seg[I->nseg++]=I->sos_end;
  for (size_t q=I->sos_end; q+1<n; q++) if (d[q]==0xFF) { int m=d[q+1]; if (m>=0xD0&&m<=0xD7){ if(I->nseg==cap){cap*=2;I->seg=realloc(I->seg,cap*sizeof(size_t));} I->seg[I->nseg++]=q+2; q++; } else if (m==0xD9) { if(I->nseg==cap){cap*=2;I->seg=realloc(I->seg,cap*sizeof(size_t));} I->seg[I->nseg++]=q+2; break;} else q++; }
  return 0;
}

/* Build a JPEG of MCU rows [r0,r1) and segment columns [c0,c1). seg[i] = start of segment i's data; the
 * marker before segment i+1 lies at seg[i+1]-2. */
static size_t slice(const unsigned char *d, const info *I, int r0, int r1, int c0, int c1, unsigned char *out, int *ow, int *oh) {
  int spr = I->mpr / I->interval;
  memcpy(out, d, I->sos_end); size_t o=I->sos_end;
  int w = (c1 - c0) * I->interval * I->mcu_w; int x0 = c0 * I->interval * I->mcu_w; if (x0 + w > I->width) w = I->width - x0;
  int h = (r1 - r0) * I->mcu_h; int y0 = r0 * I->mcu_h; if (y0 + h > I->height) h = I->height - y0;
  out[I->sof_h_off]=h>>8; out[I->sof_h_off+1]=h&255; out[I->sof_h_off+2]=w>>8; out[I->sof_h_off+3]=w&255;
  int rst=0; int first=1;
  for (int r=r0;r<r1;r++) for (int c=c0;c<c1;c++) {
    int i=r*spr+c; size_t a=I->seg[i], b=I->seg[i+1]-2;
    if(!first){ out[o++]=0xFF; out[o++]=0xD0+(rst&7); rst++; }
    first=0;
    memcpy(out+o,d+a,b-a); o+=b-a;
  }
  out[o++]=0xFF; out[o++]=0xD9;
  *ow=w; *oh=h; return o;
}

int main(int argc,char**argv){
  int n=argc-2; int K=atoi(argv[1]);
  unsigned char **d=malloc(n*sizeof(void*)); size_t *l=malloc(n*sizeof(size_t));
  unsigned char **t=malloc(n*sizeof(void*)); unsigned long *tl=malloc(n*sizeof(long)); info *I=calloc(n,sizeof(info));
  size_t tot0=0,tot1=0;
  for(int i=0;i<n;i++){FILE*f=fopen(argv[i+2],"rb");fseek(f,0,2);l[i]=ftell(f);fseek(f,0,0);d[i]=malloc(l[i]);fread(d[i],1,l[i],f);fclose(f);
    int mpr; t[i]=add_restarts(d[i],l[i],K,&tl[i],&mpr); parse(t[i],tl[i],&I[i]); tot0+=l[i]; tot1+=tl[i];}
  printf("bytes: %.1f KB -> %.1f KB (+%.2f%%)\n", tot0/1024.0/n, tot1/1024.0/n, 100.0*(tot1-tot0)/tot0);
  unsigned char *buf=malloc(4096*3*16), *sl=malloc(1<<22);
  srand(1);
  int *cx=malloc(n*4),*cy=malloc(n*4),*cw=malloc(n*4),*chh=malloc(n*4);
  for(int i=0;i<n;i++){ int W=I[i].width,H=I[i].height; double s=0.08+0.92*rand()/(double)RAND_MAX; double a=W*H*s; double ar=exp(log(0.75)+(log(4.0/3)-log(0.75))*rand()/(double)RAND_MAX);
    int w=(int)(sqrt(a*ar)+.5), h=(int)(sqrt(a/ar)+.5); if(w>W)w=W; if(h>H)h=H; cw[i]=w;chh[i]=h;cx[i]=rand()%(W-w+1);cy[i]=rand()%(H-h+1);}
  for (int mode=0; mode<3; mode++) {
    double best=1e9;
    for(int r=0;r<3;r++){ double t0=now();
      for(int i=0;i<n;i++){
        struct jpeg_decompress_struct c; struct jpeg_error_mgr e; c.err=jpeg_std_error(&e); jpeg_create_decompress(&c);
        if (mode==2) { int mw=I[i].mcu_w*I[i].interval, mh=I[i].mcu_h; int x0=cx[i]-2<0?0:cx[i]-2, x1=cx[i]+cw[i]+2, y0=cy[i]-2<0?0:cy[i]-2, y1=cy[i]+chh[i]+2;
          int c0=x0/mw, c1=(x1+mw-1)/mw, r0=y0/mh, r1=(y1+mh-1)/mh; int spr=I[i].mpr/I[i].interval; if(c1>spr)c1=spr; int rows=(I[i].height+mh-1)/mh; if(r1>rows)r1=rows;
          int ow,oh; size_t sn=slice(t[i],&I[i],r0,r1,c0,c1,sl,&ow,&oh); jpeg_mem_src(&c,sl,sn); }
        else jpeg_mem_src(&c,t[i],tl[i]);
        jpeg_read_header(&c,TRUE); c.out_color_space=JCS_RGB; jpeg_start_decompress(&c);
        if (mode==1) { JDIMENSION xo=cx[i], w=cw[i]; jpeg_crop_scanline(&c,&xo,&w); if(cy[i]) jpeg_skip_scanlines(&c,cy[i]);
          for(int y=0;y<chh[i];y++){JSAMPROW row=buf;jpeg_read_scanlines(&c,&row,1);} jpeg_abort_decompress(&c); }
        else { while(c.output_scanline<c.output_height){JSAMPROW row=buf;jpeg_read_scanlines(&c,&row,1);} jpeg_finish_decompress(&c); }
        jpeg_destroy_decompress(&c);
      }
      double tt=now()-t0; if(tt<best)best=tt; }
    printf("%s: %.0f img/s\n", mode==0?"full decode":mode==1?"region (skip+crop)":"restart slice", n/best);
  }
}
