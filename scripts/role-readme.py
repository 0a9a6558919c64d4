# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render each role's README.md from its meta/argument_specs.yml.

The argument spec is the one place a role's variables are described; the
README is made from it, so the two never disagree (tests/unit/test_role_readmes.py
fails when a README is out of date).

    python3 scripts/role-readme.py            # rewrite every roles/*/README.md
    python3 scripts/role-readme.py --check    # exit 1 naming the READMEs out of date
"""

import os
import re
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def text(markup):
    """Ansible doc markup (C(), O(), V(), M(), RV()) as Markdown."""
    markup = ' '.join(markup) if isinstance(markup, list) else str(markup)
    markup = re.sub(r'\b(?:C|O|V|RV|M)\(([^)]*)\)', lambda m: '`%s`' % m.group(1).split('=')[0]
                    if m.group(0).startswith('O(') else '`%s`' % m.group(1), markup)
    markup = re.sub(r'\bI\(([^)]*)\)', r'*\1*', markup)
    return ' '.join(markup.split())


def default_of(option):
    if 'default' not in option:
        return ''
    value = option['default']
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, (list, dict)):
        value = yaml.safe_dump(value, default_flow_style=True).strip()
    return '`%s`' % text(str(value))


def render(role):
    with open(os.path.join(REPO, 'roles', role, 'meta', 'argument_specs.yml')) as f:
        specs = yaml.safe_load(f)['argument_specs']
    main = specs['main']
    lines = ['# scalelab.testbed.%s' % role, '', text(main['short_description']).rstrip('.') + '.',
             '']
    for paragraph in main.get('description') or []:
        lines += [text(paragraph), '']
    others = [(name, spec) for name, spec in specs.items() if name != 'main']
    if others:
        lines += ['Other entry points: %s.' % ', '.join(
            '`%s` (%s)' % (name, text(spec.get('short_description', ''))) for name, spec in others), '']
    options = main.get('options') or {}
    lines += ['## Variables', '']
    if role != 'testbed':
        lines += ['The variables every role shares (`testbed_connections`, the paths, the Python) '
                  'are those of the role `scalelab.testbed.testbed`, which this one depends on.', '']
    lines += ['Every variable is declared in `meta/argument_specs.yml` and commented in '
              '`defaults/main.yml`; `ansible-doc -t role scalelab.testbed.%s` renders them. '
              'This file is made from the argument spec by `scripts/role-readme.py`.' % role, '']
    if options:
        lines += ['| variable | type | default | description |', '| --- | --- | --- | --- |']
        for name, option in options.items():
            row = (name, option.get('type', 'str'), default_of(option), text(option.get('description', '')))
            lines.append('| `%s` | %s | %s | %s |' % row)
    else:
        lines.append('None of its own.')
    lines += ['', '## Example', '', '```yaml', '- hosts: all', '  become: true', '  tasks:',
              '    - name: Run the %s role' % role, '      ansible.builtin.include_role:',
              '        name: scalelab.testbed.%s' % role, '```', '',
              'The playbooks in `playbooks/` (`scalelab.testbed.site`, `.provision`, `.run`, '
              '`.teardown`) show the roles in their intended order.', '']
    return '\n'.join(lines)


def main(argv):
    check = '--check' in argv
    stale = []
    for role in sorted(os.listdir(os.path.join(REPO, 'roles'))):
        path = os.path.join(REPO, 'roles', role, 'README.md')
        want = render(role)
        try:
            with open(path) as f:
                have = f.read()
        except OSError:
            have = None
        if have != want:
            stale.append(path)
            if not check:
                with open(path, 'w') as f:
                    f.write(want)
    if check and stale:
        print('out of date (run python3 scripts/role-readme.py): %s' % ', '.join(stale))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
