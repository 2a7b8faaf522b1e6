#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <signal.h>
static volatile int go;
static void h(int s){go=1;}
int main(int argc,char**argv){
  size_t n = (size_t)atol(argv[1])<<20;
  unsigned char *p = malloc(n);
  unsigned long x=88172645463325252UL;
  for(size_t i=0;i<n;i+=8){ x^=x<<13;x^=x>>7;x^=x<<17; memcpy(p+i,&x,8);}
  unsigned long sum=0; for(size_t i=0;i<n;i+=4096) sum+=p[i];
  signal(SIGUSR2,h);
  printf("READY %lu\n",sum); fflush(stdout);
  while(!go) pause();
  unsigned long sum2=0; for(size_t i=0;i<n;i+=4096) sum2+=p[i];
  printf("%s\n", sum==sum2?"PASS":"FAIL"); return 0;
}
