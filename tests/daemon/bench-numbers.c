/* Not a test: pivotd's number scanner and float formatter against snprintf
 * and cJSON on 784 random floats, in the same run (ns per number). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cjson/cJSON.h>
#include "pivotd.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(void){
  float x[784]; for(int i=0;i<784;i++) x[i]=(float)(rand()/(double)RAND_MAX*2-1);
  char out[40]; int tot=0; double t0,t1;
  for(int rep=0;rep<3;rep++){
  t0=now(); for(int r=0;r<1000;r++) for(int i=0;i<784;i++) tot+=pvd_fmt_float(x[i]*2,out);
  t1=now(); printf("pvd_fmt_float: %.1f ns/float\n",(t1-t0)/784000*1e9);
  t0=now(); for(int r=0;r<300;r++) for(int i=0;i<784;i++) tot+=snprintf(out,40,"%.9g",(double)(x[i]*2));
  t1=now(); printf("snprintf %%.9g: %.1f ns/float\n",(t1-t0)/(784*300.0)*1e9);
  char txt[20000]; int o=0; txt[o++]='['; for(int i=0;i<784;i++) o+=sprintf(txt+o,"%s%.7g",i?",":"",x[i]); txt[o++]=']'; txt[o]=0;
  float buf[784]; size_t got; t0=now();
  for(int r=0;r<1000;r++){const char*p=txt; pvd_json_parse_data(&p,txt+o,PV_F32,buf,784,&got);}
  t1=now(); printf("pvd_json_parse_data: %.1f ns/float\n",(t1-t0)/784000*1e9);
  t0=now(); for(int r=0;r<300;r++){cJSON*j=cJSON_Parse(txt); cJSON*it; int k=0; cJSON_ArrayForEach(it,j) buf[k++]=(float)it->valuedouble; cJSON_Delete(j);}
  t1=now(); printf("cJSON_Parse + walk: %.1f ns/float\n",(t1-t0)/(784*300.0)*1e9);
  }
  return tot==0;
}
