#!/usr/bin/env python3
# Checks what `gi-docgen check` does not: that every virtual method of
# Smelt-1.gir, each of its parameters and its return value, and every
# public field of a record (class and interface structs included) and of
# a class has a <doc>. Plugin authors read those pages first.
#
#   check-api-doc.py SMELT-1.GIR SOURCE-ROOT
#
# g-ir-scanner up to at least 1.74 writes no <doc> for a struct member
# that is a function pointer (a virtual method slot), whatever the
# `@field:` line says. For those the check reads the struct's doc comment
# itself (the GIR says where it is) and wants a described `@field:` line,
# so that the text is there for the scanners that do write it.
#
# Prints one line per missing description and exits 1 if there is any.

import os
import re
import sys
import xml.etree.ElementTree as ET

CORE = '{http://www.gtk.org/introspection/core/1.0}'
GLIB = '{http://www.gtk.org/introspection/glib/1.0}'


def has_doc(node):
    doc = node.find(CORE + 'doc')
    return doc is not None and doc.text is not None and doc.text.strip() != ''


def is_private(field):
    return field.get('private') == '1' or field.get('name', '').startswith('_')


def comment_params(source_root, doc, cache):
    """The `@name: description` entries of the doc comment that holds
    @doc's source line, as {name: description}; None if it cannot be read."""
    filename = doc.get('filename')
    line = doc.get('line')
    if filename is None or line is None:
        return None
    path = filename if os.path.isabs(filename) else os.path.join(source_root, filename)
    if path not in cache:
        try:
            with open(path, encoding='utf-8') as f:
                cache[path] = f.read().split('\n')
        except OSError:
            cache[path] = None
    lines = cache[path]
    if lines is None:
        return None
    # the block around the line: back to its /**, on to its */
    i = min(int(line) - 1, len(lines) - 1)
    while i >= 0 and '/**' not in lines[i]:
        i -= 1
    if i < 0:
        return None
    params = {}
    current = None
    for text in lines[i + 1:]:
        if '*/' in text:
            break
        text = re.sub(r'^\s*\*\s?', '', text)
        m = re.match(r'@(\w+):\s*(.*)$', text)
        if m:
            current = m.group(1)
            params[current] = m.group(2).strip()
        elif current is not None and text.strip() != '':
            params[current] += ' ' + text.strip()
        else:
            current = None
    return params


def check_vfunc(owner, vfunc, problems):
    name = '%s.%s' % (owner, vfunc.get('name'))
    if not has_doc(vfunc):
        problems.append('virtual method %s has no description' % name)
    params = vfunc.find(CORE + 'parameters')
    if params is not None:
        for p in params:
            if p.tag in (CORE + 'parameter', CORE + 'instance-parameter') and not has_doc(p):
                problems.append('parameter %s of virtual method %s is not documented'
                                % (p.get('name'), name))
    ret = vfunc.find(CORE + 'return-value')
    if ret is not None:
        rtype = ret.find(CORE + 'type')
        void = rtype is not None and rtype.get('name') == 'none'
        if not void and not has_doc(ret):
            problems.append('return value of virtual method %s is not documented' % name)


def check_fields(kind, owner, node, source_root, cache, problems):
    for field in node.findall(CORE + 'field'):
        if is_private(field) or has_doc(field):
            continue
        fname = field.get('name')
        where = '%s %s field %s' % (kind, owner, fname)
        if field.find(CORE + 'callback') is not None and node.find(CORE + 'doc') is not None:
            # a function pointer member: the scanner dropped the text, if any
            params = comment_params(source_root, node.find(CORE + 'doc'), cache)
            if params is None:
                problems.append('%s: cannot read the doc comment of %s' % (where, owner))
            elif not params.get(fname):
                doc = node.find(CORE + 'doc')
                problems.append('%s is not documented (no "@%s:" line in the doc comment '
                                'at %s:%s)' % (where, fname, doc.get('filename'), doc.get('line')))
            continue
        problems.append('%s is not documented' % where)


def main():
    if len(sys.argv) != 3:
        sys.stderr.write('usage: check-api-doc.py SMELT-1.GIR SOURCE-ROOT\n')
        return 2
    gir, source_root = sys.argv[1], sys.argv[2]
    ns = ET.parse(gir).getroot().find(CORE + 'namespace')
    problems = []
    cache = {}
    counts = {'virtual methods': 0, 'fields': 0}

    for node in ns:
        name = node.get('name')
        if node.tag in (CORE + 'class', CORE + 'interface'):
            for vfunc in node.findall(CORE + 'virtual-method'):
                counts['virtual methods'] += 1
                check_vfunc(name, vfunc, problems)
        if node.tag == CORE + 'class' or (node.tag == CORE + 'record' and
                                          not name.startswith('_') and
                                          node.get('disguised') != '1'):
            kind = 'class' if node.tag == CORE + 'class' else 'record'
            if node.get(GLIB + 'is-gtype-struct-for'):
                kind = 'class struct'
            counts['fields'] += sum(1 for f in node.findall(CORE + 'field') if not is_private(f))
            check_fields(kind, name, node, source_root, cache, problems)

    for p in problems:
        print(p)
    if problems:
        print('%s: %d undocumented item(s)' % (os.path.basename(gir), len(problems)))
        return 1
    print('%s: every virtual method (%d), its parameters and return value, and every '
          'public field (%d) is documented' % (os.path.basename(gir), counts['virtual methods'],
                                               counts['fields']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
