"""the case store: cases, labels, adjudications, tokens, erasures

Revision ID: 0001
Revises:
Create Date: 2026-11-29 08:42:29.967784
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cases',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=True, comment="the client's id for the submission: a retry with the same id returns the stored case"),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('origin', sa.String(length=16), nullable=False, comment="'cases' (POST /v1/cases) or 'predict' (a stored prediction)"),
    sa.Column('image_sha256', sa.String(length=64), nullable=False, comment='the stored image file (EXIF removed, orientation applied) is named by this hash'),
    sa.Column('image_format', sa.String(length=8), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('age', sa.Integer(), nullable=True),
    sa.Column('sex', sa.String(length=16), nullable=True),
    sa.Column('site', sa.String(length=32), nullable=True),
    sa.Column('patient_id', sa.String(length=128), nullable=True),
    sa.Column('lesion_id', sa.String(length=128), nullable=True),
    sa.Column('consent_research', sa.Boolean(), nullable=False),
    sa.Column('consent_version', sa.String(length=32), nullable=True),
    sa.Column('device', sa.String(length=128), nullable=True),
    sa.Column('app_version', sa.String(length=64), nullable=True),
    sa.Column('partition', sa.String(length=8), nullable=True, comment='train / val / test when fixed for exports'),
    sa.Column('model_name', sa.String(length=128), nullable=False),
    sa.Column('model_version', sa.String(length=128), nullable=False, comment="the bundle's time and weights sha256"),
    sa.Column('top_class', sa.String(length=64), nullable=False),
    sa.Column('probabilities', sa.JSON(), nullable=False, comment='calibrated, class -> probability'),
    sa.Column('decision', sa.JSON(), nullable=False, comment='per view: score, positive, rule'),
    sa.Column('latency_ms', sa.Float(), nullable=False),
    sa.Column('quality', sa.JSON(), nullable=False, comment='image-quality problems found at submission'),
    sa.Column('response', sa.JSON(), nullable=False, comment='the prediction as answered, for retries'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('request_id')
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index('ix_cases_created_at', ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_image_sha256'), ['image_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_lesion_id'), ['lesion_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_patient_id'), ['patient_id'], unique=False)

    op.create_table('erasures',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('case_id', sa.String(length=32), nullable=False),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('tokens',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=8), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False, comment='only the hash is kept'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name'),
    sa.UniqueConstraint('token_sha256')
    )
    op.create_table('adjudications',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('case_id', sa.String(length=32), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('adjudicator', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('adjudications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_adjudications_case_id'), ['case_id'], unique=False)

    op.create_table('labels',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('case_id', sa.String(length=32), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False, comment='histo, confocal, follow_up, consensus, single_reader'),
    sa.Column('reader', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_labels_case_id'), ['case_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_labels_case_id'))

    op.drop_table('labels')
    with op.batch_alter_table('adjudications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_adjudications_case_id'))

    op.drop_table('adjudications')
    op.drop_table('tokens')
    op.drop_table('erasures')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_patient_id'))
        batch_op.drop_index(batch_op.f('ix_cases_lesion_id'))
        batch_op.drop_index(batch_op.f('ix_cases_image_sha256'))
        batch_op.drop_index('ix_cases_created_at')

    op.drop_table('cases')
