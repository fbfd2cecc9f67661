#!/usr/bin/env python3
"""The module graph of one of husk's crates, from its `use` paths (comments and test
modules left out), and the circles in it.

    python3 tests/module_graph.py runtime [--edges]
    python3 tests/module_graph.py shim [--edges]
"""
import collections
import os
import re
import sys

root = sys.argv[1]
src=os.path.join(root,'src')
mods={}
for dp,dn,fn in os.walk(src):
    for f in fn:
        if not f.endswith('.rs') or f=='tests.rs' or 'tests' in dp.split('/'): continue
        p=os.path.join(dp,f); rel=os.path.relpath(p,src)[:-3]
        parts=rel.split('/')
        if parts[-1] in ('mod','lib','main'): parts=parts[:-1]
        name='::'.join(parts) or 'crate'
        mods[name]=p
def resolve(cur,path):
    segs=path.split('::')
    if segs[0]=='crate': base=[]; segs=segs[1:]
    elif segs[0]=='super':
        base=cur.split('::') if cur!='crate' else []
        while segs and segs[0]=='super': base=base[:-1]; segs=segs[1:]
    elif segs[0]=='self': base=cur.split('::'); segs=segs[1:]
    else: return None
    # longest prefix that is a module
    cand=base+segs
    for i in range(len(cand),0,-1):
        n='::'.join(cand[:i])
        if n in mods: return n
    return None
edges=set()
for m,p in mods.items():
    text=open(p).read()
    text=re.sub(r'//[^\n]*','',text)
    # strip test modules
    text=re.split(r'#\[cfg\(test\)\]\s*mod tests \{',text)[0]
    for mt in re.finditer(r'\b((?:crate|super|self)(?:::\w+)+)',text):
        t=resolve(m,mt.group(1))
        if t and t!=m and not m.startswith(t+'::') and not t.startswith(m+'::'):
            edges.add((m,t))
# cycles via SCC
g=collections.defaultdict(set)
for a,b in edges: g[a].add(b)
idx={};low={};st=[];on=set();sccs=[];c=[0]
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in g[v]:
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: sccs.append(comp)
sys.setrecursionlimit(10000)
for v in list(mods):
    if v not in idx: sc(v)
if '--edges' in sys.argv:
    for m in sorted(mods):
        ts=sorted(t for a,t in edges if a==m)
        print(f"{m} -> {', '.join(ts) if ts else '(nothing)'}")
print("cycles:",sccs if sccs else "none")
