"""entity links and the link review queue

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:08:44.200236
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table('entity_link_candidates',
    sa.Column('candidate_id', sa.String(length=16), nullable=False),
    sa.Column('system', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=256), nullable=False),
    sa.Column('account_name', sa.Text(), nullable=False),
    sa.Column('customer_id', sa.String(length=256), nullable=False),
    sa.Column('customer_name', sa.Text(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('last_seen_run', sa.Integer(), nullable=True),
    sa.Column('decided_by', sa.String(length=128), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['last_seen_run'], ['runs.run_id'],
                            name=op.f('fk_entity_link_candidates_last_seen_run_runs')),
    sa.PrimaryKeyConstraint('candidate_id', name=op.f('pk_entity_link_candidates'))
    )
    with op.batch_alter_table('entity_link_candidates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_entity_link_candidates_status'), ['status'], unique=False)

    op.create_table('entity_links',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('system', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=256), nullable=False),
    sa.Column('customer_id', sa.String(length=256), nullable=False),
    sa.Column('method', sa.String(length=32), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.run_id'], name=op.f('fk_entity_links_run_id_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_entity_links'))
    )
    with op.batch_alter_table('entity_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_entity_links_run_id'), ['run_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('entity_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_entity_links_run_id'))

    op.drop_table('entity_links')
    with op.batch_alter_table('entity_link_candidates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_entity_link_candidates_status'))

    op.drop_table('entity_link_candidates')
