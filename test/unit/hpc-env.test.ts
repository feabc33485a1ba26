import { describe, expect, it } from 'vitest';
import { hpcEnvDefaults } from '../../ts/container/hpc';

describe("--hpc's own variables", () => {
  it("turn Open MPI's CMA off unless the host's environment or the image sets it", () => {
    expect(hpcEnvDefaults({ HOME: '/h' }, [])).toEqual(['OMPI_MCA_btl_vader_single_copy_mechanism=none']);
    expect(hpcEnvDefaults({ OMPI_MCA_btl_vader_single_copy_mechanism: 'cma' }, [])).toEqual([]);
    expect(hpcEnvDefaults({}, ['OMPI_MCA_btl_vader_single_copy_mechanism=xpmem'])).toEqual([]);
  });
});
