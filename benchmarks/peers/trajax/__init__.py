# Copyright 2021 Google LLC
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     https://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Vendored subset of trajax (https://github.com/google/trajax, commit
c94a637c5a397b3d4100153f25b4b165507b5b20) for metalqr's benchmarks only: ``optimizers.ilqr``
and ``tvlqr``. See benchmarks/peers/README.md and LICENSE-trajax."""
