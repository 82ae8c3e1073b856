from videoflix_catalog.models import Base
from videoflix_shared.db import run_alembic_env

run_alembic_env(Base.metadata)
