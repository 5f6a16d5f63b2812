//! The company as the commission engine sees it: the distributor network, the SKU catalog and the
//! plan versions. It answers the order aggregate's questions "as it stood at time T".

use chrono::{DateTime, Utc};

use crate::catalog::{Catalog, SkuMapping};
use crate::ids::{DistributorId, Platform};
use crate::network::Network;
use crate::order::{CalculationContext, PlanSource};
use crate::plan::{CommissionPlan, PlanBook};
use crate::snapshot::{HierarchySnapshot, SnapshotRequest};

#[derive(Debug, Default, Clone)]
pub struct Company {
    pub network: Network,
    pub catalog: Catalog,
    pub plans: PlanBook,
}

impl PlanSource for Company {
    fn plan(&self, version: &str) -> Option<&CommissionPlan> {
        self.plans.get(version)
    }
}

impl CalculationContext for Company {
    fn plan_in_force(&self, at: DateTime<Utc>) -> Option<&CommissionPlan> {
        self.plans.in_force_at(at)
    }

    fn sku_mapping(
        &self,
        platform: Platform,
        platform_sku: &str,
        at: DateTime<Utc>,
    ) -> Option<&SkuMapping> {
        self.catalog.resolve(platform, platform_sku, at)
    }

    fn snapshot(
        &self,
        distributor: &DistributorId,
        at: DateTime<Utc>,
        request: &SnapshotRequest,
    ) -> Result<HierarchySnapshot, String> {
        self.network
            .snapshot_at(distributor, at, request)
            .map_err(|e| e.to_string())
    }
}
