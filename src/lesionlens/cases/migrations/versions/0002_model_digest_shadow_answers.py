"""the answering model's digest on every case; the shadow answers of a challenger

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('model_digest', sa.String(length=64), nullable=True,
                                      comment="the answering bundle's content digest; null for cases stored before it was kept"))
        batch_op.create_index(batch_op.f('ix_cases_model_digest'), ['model_digest'], unique=False)

    op.create_table('shadow_answers',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('case_id', sa.String(length=32), nullable=False),
    sa.Column('model_digest', sa.String(length=64), nullable=False, comment='the challenger that answered'),
    sa.Column('top_class', sa.String(length=64), nullable=False),
    sa.Column('probabilities', sa.JSON(), nullable=False, comment='calibrated, class -> probability'),
    sa.Column('decision', sa.JSON(), nullable=False, comment='per view: score, positive, rule'),
    sa.Column('latency_ms', sa.Float(), nullable=False, comment="the challenger's decode and model time"),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_id', 'model_digest', name='uq_shadow_answers_case_model')
    )
    with op.batch_alter_table('shadow_answers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shadow_answers_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_shadow_answers_model_digest'), ['model_digest'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('shadow_answers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shadow_answers_model_digest'))
        batch_op.drop_index(batch_op.f('ix_shadow_answers_case_id'))

    op.drop_table('shadow_answers')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_model_digest'))
        batch_op.drop_column('model_digest')
